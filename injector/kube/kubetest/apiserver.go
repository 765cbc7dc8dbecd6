// Package kubetest is a fake apiserver for the tests of the injector's
// packages that talk to one (kube.Client).
package kubetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/rest"

	"github.com/ramvault/ramvault/injector/kube"
)

// APIServer answers the few apiserver calls the webhook makes, the way
// the apiserver does: get, create, update and strategic merge patch of
// objects kept as JSON by path, each write giving a new resourceVersion; a
// write carrying an older resourceVersion fails with 409 Conflict, a create
// of an existing object with 409 AlreadyExists, a read of a missing one with
// 404 NotFound, each with the apiserver's Status body; and GET /version.
type APIServer struct {
	// GitVersion is what GET /version answers.
	GitVersion string

	t *testing.T

	mu       sync.Mutex
	objects  map[string][]byte // item path (/api/v1/namespaces/NS/secrets/NAME) → JSON
	rv       int
	writes   []string       // "create secrets", … in order
	conflict map[string]int // item path → how many PUTs to fail as if another writer came first
	patchers map[string]any // resource → its Go type, for strategic merge patches
}

// NewAPIServer returns an empty fake apiserver; its clients (Client) serve
// it until the test ends.
func NewAPIServer(t *testing.T) *APIServer {
	return &APIServer{t: t, GitVersion: "v1.34.4", objects: map[string][]byte{}, conflict: map[string]int{},
		patchers: map[string]any{"mutatingwebhookconfigurations": admissionregistrationv1.MutatingWebhookConfiguration{}}}
}

// Client is a kube.Client of the server through a connection of its own, and
// a switch that, on, makes every call of this client fail with a 500.
func (a *APIServer) Client(t *testing.T) (*kube.Client, *atomic.Bool) {
	t.Helper()
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			writeStatus(w, apierrors.NewInternalError(fmt.Errorf("test: apiserver unreachable")))
			return
		}
		a.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	// QPS -1: no client-side rate limit, for the short periods of the tests.
	c, err := kube.New(&rest.Config{Host: srv.URL, QPS: -1})
	if err != nil {
		t.Fatal(err)
	}
	return c, &down
}

// Item is the path of an object: /api/v1/namespaces/NS/RESOURCE/NAME, or
// /apis/GROUP/VERSION/…; ns "" for a cluster-scoped one.
func Item(groupVersion, ns, resource, name string) string {
	p := "/api/v1"
	if groupVersion != "v1" {
		p = path.Join("/apis", groupVersion)
	}
	if ns != "" {
		p = path.Join(p, "namespaces", ns)
	}
	return path.Join(p, resource, name)
}

// Set stores obj at path as it is (seeding, or another writer), with a new
// resourceVersion.
func (a *APIServer) Set(path string, obj any) {
	a.t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		a.t.Fatal(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.store(path, b); err != nil {
		a.t.Fatal(err)
	}
}

// Get reads the object at path into out; false if there is none.
func (a *APIServer) Get(path string, out any) bool {
	a.t.Helper()
	a.mu.Lock()
	b, ok := a.objects[path]
	a.mu.Unlock()
	if ok {
		if err := json.Unmarshal(b, out); err != nil {
			a.t.Fatal(err)
		}
	}
	return ok
}

// List is the objects under the collection path prefix, in path order.
func (a *APIServer) List(prefix string) [][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	var paths []string
	for p := range a.objects {
		if strings.HasPrefix(p, prefix+"/") {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	out := make([][]byte, len(paths))
	for i, p := range paths {
		out[i] = a.objects[p]
	}
	return out
}

// TakeWrites returns the writes so far and forgets them.
func (a *APIServer) TakeWrites() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.writes
	a.writes = nil
	return w
}

// ConflictNext makes the next n PUTs to path fail with a Conflict, as if
// another writer had updated the object just before each.
func (a *APIServer) ConflictNext(path string, n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conflict[path] = n
}

// ConflictsLeft is how many of the Conflicts asked for path are still to come.
func (a *APIServer) ConflictsLeft(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conflict[path]
}

// store writes obj (JSON) at path with the next resourceVersion and
// returns what is stored. Call with mu held.
func (a *APIServer) store(path string, obj []byte) ([]byte, error) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(obj))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	meta, _ := m["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		m["metadata"] = meta
	}
	a.rv++
	meta["resourceVersion"] = strconv.Itoa(a.rv)
	if meta["uid"] == nil {
		meta["uid"] = fmt.Sprintf("uid-%d", a.rv)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	a.objects[path] = b
	return b, nil
}

// ServeHTTP answers one request, as the apiserver would.
func (a *APIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/version" {
		writeJSON(w, http.StatusOK, map[string]string{"gitVersion": a.GitVersion})
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	base := 2 // api, v1
	if parts[0] == "apis" {
		base = 3 // apis, GROUP, VERSION
	}
	if len(parts) <= base || (parts[0] != "api" && parts[0] != "apis") {
		writeStatus(w, apierrors.NewNotFound(schema.GroupResource{}, r.URL.Path))
		return
	}
	res := base // index of the resource
	if parts[res] == "namespaces" && len(parts) > res+2 {
		res += 2
	}
	gr := schema.GroupResource{Resource: parts[res]}
	if parts[0] == "apis" {
		gr.Group = parts[1]
	}
	collection := "/" + path.Join(parts[:res+1]...)
	name := path.Join(parts[res+1:]...)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest(err.Error()))
		return
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	item := path.Join(collection, name)
	cur, exists := a.objects[item]
	switch {
	case r.Method == http.MethodGet && name != "":
		if !exists {
			writeStatus(w, apierrors.NewNotFound(gr, name))
			return
		}
		writeRaw(w, http.StatusOK, cur)

	case r.Method == http.MethodPost && name == "":
		var obj metav1.PartialObjectMetadata
		if err := json.Unmarshal(body, &obj); err != nil || obj.Name == "" || r.Header.Get("Content-Type") != "application/json" {
			writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("a JSON object with a name: %v", err)))
			return
		}
		item = path.Join(collection, obj.Name)
		if _, ok := a.objects[item]; ok {
			writeStatus(w, apierrors.NewAlreadyExists(gr, obj.Name))
			return
		}
		a.write(w, http.StatusCreated, "create", gr, item, body)

	case r.Method == http.MethodPut && name != "":
		if !exists {
			writeStatus(w, apierrors.NewNotFound(gr, name))
			return
		}
		if a.conflict[item] > 0 {
			a.conflict[item]--
			if cur, err = a.store(item, cur); err != nil {
				writeStatus(w, apierrors.NewInternalError(err))
				return
			}
		}
		var obj metav1.PartialObjectMetadata
		if err := json.Unmarshal(body, &obj); err != nil || obj.Name != name {
			writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("a JSON object named %s: %v", name, err)))
			return
		}
		if !a.sameVersion(cur, obj.ResourceVersion) {
			writeStatus(w, conflict(gr, name))
			return
		}
		a.write(w, http.StatusOK, "update", gr, item, body)

	case r.Method == http.MethodPatch && name != "":
		if !exists {
			writeStatus(w, apierrors.NewNotFound(gr, name))
			return
		}
		typ, ok := a.patchers[gr.Resource]
		if !ok || r.Header.Get("Content-Type") != "application/strategic-merge-patch+json" {
			writeStatus(w, apierrors.NewBadRequest("this fake takes strategic merge patches of "+fmt.Sprint(a.patchers)))
			return
		}
		patched, err := strategicpatch.StrategicMergePatch(cur, body, typ)
		if err != nil {
			writeStatus(w, apierrors.NewBadRequest(err.Error()))
			return
		}
		var obj metav1.PartialObjectMetadata
		if err := json.Unmarshal(patched, &obj); err != nil {
			writeStatus(w, apierrors.NewInternalError(err))
			return
		}
		if !a.sameVersion(cur, obj.ResourceVersion) {
			writeStatus(w, conflict(gr, name))
			return
		}
		a.write(w, http.StatusOK, "patch", gr, item, patched)

	default:
		writeStatus(w, apierrors.NewMethodNotSupported(gr, r.Method))
	}
}

// sameVersion: rv, the resourceVersion a write carries, is empty (an
// unconditional write) or the stored one's.
func (a *APIServer) sameVersion(cur []byte, rv string) bool {
	var stored metav1.PartialObjectMetadata
	if err := json.Unmarshal(cur, &stored); err != nil {
		a.t.Error(err)
		return false
	}
	return rv == "" || rv == stored.ResourceVersion
}

func (a *APIServer) write(w http.ResponseWriter, code int, verb string, gr schema.GroupResource, path string, obj []byte) {
	stored, err := a.store(path, obj)
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	a.writes = append(a.writes, verb+" "+gr.Resource)
	writeRaw(w, code, stored)
}

func conflict(gr schema.GroupResource, name string) *apierrors.StatusError {
	return apierrors.NewConflict(gr, name, fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
}

func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.Status()
	st.APIVersion, st.Kind = "v1", "Status"
	writeJSON(w, int(st.Code), st)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	writeRaw(w, code, b)
}

func writeRaw(w http.ResponseWriter, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}
