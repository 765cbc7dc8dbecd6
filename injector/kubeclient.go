package injector

import (
	"context"
	"encoding/json"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	apiversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/rest"
)

// kubeClient makes the webhook's calls to the apiserver: Secrets and Events
// (core/v1), its MutatingWebhookConfiguration (admissionregistration/v1),
// its Lease (coordination/v1) and GET /version.
//
// It is client-go's REST client with a scheme of only those kinds, not the
// generated typed clients: each of those imports
// k8s.io/client-go/kubernetes/scheme, which registers, and so links, every
// type of every API group (the stripped binary was 40.6 MB with them, 25.5
// MB without). Requests and errors are those of the typed clients: the
// same codecs, and a *apierrors.StatusError from the apiserver's Status for
// apierrors.IsNotFound, IsConflict and IsAlreadyExists. Each group has its
// own client, so its own client-side rate limit, as before.
type kubeClient struct {
	core, admission, coordination rest.Interface
}

// kubeScheme knows the kinds the webhook reads and writes, and the Status
// of errors.
func kubeScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	s.AddKnownTypes(corev1.SchemeGroupVersion, &corev1.Secret{}, &corev1.Event{})
	s.AddKnownTypes(admissionregistrationv1.SchemeGroupVersion, &admissionregistrationv1.MutatingWebhookConfiguration{})
	s.AddKnownTypes(coordinationv1.SchemeGroupVersion, &coordinationv1.Lease{})
	metav1.AddToGroupVersion(s, corev1.SchemeGroupVersion) // Status, unversioned: the errors of every group
	return s
}

func newKubeClient(rc *rest.Config) (*kubeClient, error) {
	s := kubeScheme()
	codecs := rest.CodecFactoryForGeneratedClient(s, serializer.NewCodecFactory(s)).WithoutConversion()
	rc = rest.CopyConfig(rc)
	if rc.UserAgent == "" {
		rc.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	// One connection pool for the three groups' clients.
	httpClient, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	client := func(apiPath string, gv schema.GroupVersion) (rest.Interface, error) {
		c := rest.CopyConfig(rc)
		c.APIPath = apiPath
		c.GroupVersion = &gv
		c.NegotiatedSerializer = codecs
		return rest.RESTClientForConfigAndClient(c, httpClient)
	}
	var c kubeClient
	if c.core, err = client("/api", corev1.SchemeGroupVersion); err != nil {
		return nil, err
	}
	if c.admission, err = client("/apis", admissionregistrationv1.SchemeGroupVersion); err != nil {
		return nil, err
	}
	if c.coordination, err = client("/apis", coordinationv1.SchemeGroupVersion); err != nil {
		return nil, err
	}
	return &c, nil
}

// apiResource is a resource of one namespace ("": cluster-scoped) and the
// client of its group.
type apiResource struct {
	client    rest.Interface
	name      string // plural: secrets
	namespace string
}

func (c *kubeClient) secrets(ns string) apiResource { return apiResource{c.core, "secrets", ns} }
func (c *kubeClient) events(ns string) apiResource  { return apiResource{c.core, "events", ns} }
func (c *kubeClient) leases(ns string) apiResource  { return apiResource{c.coordination, "leases", ns} }
func (c *kubeClient) webhookConfigs() apiResource {
	return apiResource{c.admission, "mutatingwebhookconfigurations", ""}
}
func (r apiResource) on(req *rest.Request) *rest.Request {
	return req.NamespaceIfScoped(r.namespace, r.namespace != "").Resource(r.name)
}

// get reads the object name into out.
func (r apiResource) get(ctx context.Context, name string, out runtime.Object) error {
	return r.on(r.client.Get()).Name(name).Do(ctx).Into(out)
}

// create creates obj, and reads what the apiserver made of it into out.
func (r apiResource) create(ctx context.Context, obj, out runtime.Object) error {
	return r.on(r.client.Post()).Body(obj).Do(ctx).Into(out)
}

// update replaces the object name with obj, and reads the result into out;
// the resourceVersion in obj makes it fail with a Conflict if the object
// changed since it was read.
func (r apiResource) update(ctx context.Context, name string, obj, out runtime.Object) error {
	return r.on(r.client.Put()).Name(name).Body(obj).Do(ctx).Into(out)
}

// patch applies data, a patch of type pt, to the object name.
func (r apiResource) patch(ctx context.Context, name string, pt types.PatchType, data []byte, fieldManager string) error {
	return r.on(r.client.Patch(pt)).Name(name).Param("fieldManager", fieldManager).Body(data).Do(ctx).Error()
}

// EventSink creates Events (the webhook's kubeClient is one).
type EventSink interface {
	CreateEvent(ctx context.Context, ev *corev1.Event) error
}

// CreateEvent creates ev in its namespace.
func (c *kubeClient) CreateEvent(ctx context.Context, ev *corev1.Event) error {
	return c.events(ev.Namespace).create(ctx, ev, &corev1.Event{})
}

// serverVersioner tells the apiserver's version (a discovery client is one).
type serverVersioner interface {
	ServerVersion() (*apiversion.Info, error)
}

// versionGetter reads GET /version, the one discovery call the webhook
// makes, each time under apiTimeout.
type versionGetter struct {
	ctx  context.Context
	rest rest.Interface
}

func (v versionGetter) ServerVersion() (*apiversion.Info, error) {
	ctx, cancel := context.WithTimeout(v.ctx, apiTimeout)
	defer cancel()
	body, err := v.rest.Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	var info apiversion.Info
	if err := json.Unmarshal(body, &info); err != nil {
		return nil, fmt.Errorf("GET /version: %w", err)
	}
	return &info, nil
}
