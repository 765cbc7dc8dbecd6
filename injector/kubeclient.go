package injector

import (
	"context"
	"encoding/json"
	"fmt"

	apiversion "k8s.io/apimachinery/pkg/version"
	admissionregistrationv1 "k8s.io/client-go/kubernetes/typed/admissionregistration/v1"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
)

// kubeClient is what the webhook asks of the apiserver: the typed clients of
// the three API groups it uses (Events and Secrets, its webhook
// configuration, its Lease). A kubernetes.Interface (or its fake) is one; the
// webhook builds only these, since the full clientset links every group's
// client into the image.
type kubeClient interface {
	CoreV1() corev1.CoreV1Interface
	AdmissionregistrationV1() admissionregistrationv1.AdmissionregistrationV1Interface
	CoordinationV1() coordinationv1.CoordinationV1Interface
}

// typedClients is the webhook's kubeClient.
type typedClients struct {
	core         *corev1.CoreV1Client
	admission    *admissionregistrationv1.AdmissionregistrationV1Client
	coordination *coordinationv1.CoordinationV1Client
}

func newKubeClient(rc *rest.Config) (*typedClients, error) {
	var c typedClients
	var err error
	if c.core, err = corev1.NewForConfig(rc); err != nil {
		return nil, err
	}
	if c.admission, err = admissionregistrationv1.NewForConfig(rc); err != nil {
		return nil, err
	}
	if c.coordination, err = coordinationv1.NewForConfig(rc); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *typedClients) CoreV1() corev1.CoreV1Interface { return c.core }
func (c *typedClients) AdmissionregistrationV1() admissionregistrationv1.AdmissionregistrationV1Interface {
	return c.admission
}
func (c *typedClients) CoordinationV1() coordinationv1.CoordinationV1Interface { return c.coordination }

// serverVersioner tells the apiserver's version (a discovery client is one).
type serverVersioner interface {
	ServerVersion() (*apiversion.Info, error)
}

// versionGetter reads GET /version, the one discovery call the webhook makes.
type versionGetter struct {
	ctx  context.Context
	rest rest.Interface
}

func (v versionGetter) ServerVersion() (*apiversion.Info, error) {
	body, err := v.rest.Get().AbsPath("/version").Do(v.ctx).Raw()
	if err != nil {
		return nil, err
	}
	var info apiversion.Info
	if err := json.Unmarshal(body, &info); err != nil {
		return nil, fmt.Errorf("GET /version: %w", err)
	}
	return &info, nil
}
