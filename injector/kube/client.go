// Package kube is the injector's client of the apiserver: client-go's REST
// client with a scheme of only the kinds the webhook reads and writes.
package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
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

// Timeout bounds each call to the apiserver that has no tighter bound of
// its own.
const Timeout = 10 * time.Second

// Client makes the webhook's calls to the apiserver: Secrets
// (core/v1), its MutatingWebhookConfiguration (admissionregistration/v1),
// its Lease (coordination/v1) and GET /version; and those of `ramvault
// status`: Pods and their proxy (core/v1), Deployments (apps/v1).
//
// It is client-go's REST client with a scheme of only those kinds, not the
// generated typed clients: each of those imports
// k8s.io/client-go/kubernetes/scheme, which registers, and so links, every
// type of every API group (the stripped binary was 40.6 MB with them, 25.5
// MB without). Requests and errors are those of the typed clients: the
// same codecs, and a *apierrors.StatusError from the apiserver's Status for
// apierrors.IsNotFound, IsConflict and IsAlreadyExists. Each group has its
// own client, so its own client-side rate limit, as before.
type Client struct {
	core, admission, coordination, apps rest.Interface
}

// scheme knows the kinds the webhook reads and writes, and the Status of
// errors.
func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	s.AddKnownTypes(corev1.SchemeGroupVersion, &corev1.Secret{}, &corev1.Pod{}, &corev1.PodList{})
	s.AddKnownTypes(appsv1.SchemeGroupVersion, &appsv1.Deployment{})
	s.AddKnownTypes(admissionregistrationv1.SchemeGroupVersion, &admissionregistrationv1.MutatingWebhookConfiguration{})
	s.AddKnownTypes(coordinationv1.SchemeGroupVersion, &coordinationv1.Lease{})
	metav1.AddToGroupVersion(s, corev1.SchemeGroupVersion) // Status, unversioned: the errors of every group
	return s
}

// New returns the client of the apiserver rc points to.
func New(rc *rest.Config) (*Client, error) {
	s := scheme()
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
	var c Client
	if c.core, err = client("/api", corev1.SchemeGroupVersion); err != nil {
		return nil, err
	}
	if c.admission, err = client("/apis", admissionregistrationv1.SchemeGroupVersion); err != nil {
		return nil, err
	}
	if c.coordination, err = client("/apis", coordinationv1.SchemeGroupVersion); err != nil {
		return nil, err
	}
	if c.apps, err = client("/apis", appsv1.SchemeGroupVersion); err != nil {
		return nil, err
	}
	return &c, nil
}

// Resource is a resource of one namespace ("": cluster-scoped) and the
// client of its group.
type Resource struct {
	client    rest.Interface
	name      string // plural: secrets
	namespace string
}

// Secrets are the Secrets of namespace ns.
func (c *Client) Secrets(ns string) Resource { return Resource{c.core, "secrets", ns} }

// Leases are the coordination.k8s.io/v1 Leases of namespace ns.
func (c *Client) Leases(ns string) Resource { return Resource{c.coordination, "leases", ns} }

// Pods are the Pods of namespace ns.
func (c *Client) Pods(ns string) Resource { return Resource{c.core, "pods", ns} }

// Deployments are the apps/v1 Deployments of namespace ns.
func (c *Client) Deployments(ns string) Resource { return Resource{c.apps, "deployments", ns} }

// PodProxyGet is GET path on port of Pod name through the apiserver's pod
// proxy (pods/proxy, verb get), and the answer's body.
func (c *Client) PodProxyGet(ctx context.Context, ns, name string, port int, path string) ([]byte, error) {
	return c.core.Get().Namespace(ns).Resource("pods").Name(fmt.Sprintf("%s:%d", name, port)).
		SubResource("proxy").Suffix(path).Do(ctx).Raw()
}

// WebhookConfigs are the MutatingWebhookConfigurations.
func (c *Client) WebhookConfigs() Resource {
	return Resource{c.admission, "mutatingwebhookconfigurations", ""}
}

func (r Resource) on(req *rest.Request) *rest.Request {
	return req.NamespaceIfScoped(r.namespace, r.namespace != "").Resource(r.name)
}

// Get reads the object name into out.
func (r Resource) Get(ctx context.Context, name string, out runtime.Object) error {
	return r.on(r.client.Get()).Name(name).Do(ctx).Into(out)
}

// List reads the objects whose labels match selector ("": all) into out,
// a list kind.
func (r Resource) List(ctx context.Context, selector string, out runtime.Object) error {
	req := r.on(r.client.Get())
	if selector != "" {
		req = req.Param("labelSelector", selector)
	}
	return req.Do(ctx).Into(out)
}

// Create creates obj, and reads what the apiserver made of it into out.
func (r Resource) Create(ctx context.Context, obj, out runtime.Object) error {
	return r.on(r.client.Post()).Body(obj).Do(ctx).Into(out)
}

// Update replaces the object name with obj, and reads the result into out;
// the resourceVersion in obj makes it fail with a Conflict if the object
// changed since it was read.
func (r Resource) Update(ctx context.Context, name string, obj, out runtime.Object) error {
	return r.on(r.client.Put()).Name(name).Body(obj).Do(ctx).Into(out)
}

// Patch applies data, a patch of type pt, to the object name.
func (r Resource) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, fieldManager string) error {
	return r.on(r.client.Patch(pt)).Name(name).Param("fieldManager", fieldManager).Body(data).Do(ctx).Error()
}

// ServerVersion reads GET /version, the one discovery call the webhook
// makes, under Timeout.
func (c *Client) ServerVersion(ctx context.Context) (*apiversion.Info, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	body, err := c.core.Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	var info apiversion.Info
	if err := json.Unmarshal(body, &info); err != nil {
		return nil, fmt.Errorf("GET /version: %w", err)
	}
	return &info, nil
}
