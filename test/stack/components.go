package stack

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const pgBin = "/usr/lib/postgresql/15/bin"

func lookPath(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		_, err := os.Stat(name)
		return name, err
	}
	return exec.LookPath(name)
}

func (s *Stack) bin(name string) string { return filepath.Join(s.cfg.Bin, name) }

// writeConfigs writes kubeconfigs, the kubelet and containerd configuration
// and the CNI network, all pointing into the state root.
func (s *Stack) writeConfigs() error {
	kc := func(user, cert, key string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: ramvault-dev
  cluster: {server: "https://%s:%d", certificate-authority: %q}
users:
- name: %s
  user: {client-certificate: %q, client-key: %q}
contexts:
- name: ramvault-dev
  context: {cluster: ramvault-dev, user: %s}
current-context: ramvault-dev
`, Gateway, APIServerPort, s.p.pki("ca.crt"), user, s.p.pki(cert), s.p.pki(key), user)
	}
	files := map[string]string{
		s.p.adminKubeconfig():                 kc("admin", "admin.crt", "admin.key"),
		s.p.join("kubelet.kubeconfig"):        kc("kubelet", "kubelet.crt", "kubelet.key"),
		s.p.join("kubelet-config.yaml"):       s.kubeletConfig(),
		s.p.join("containerd", "config.toml"): s.containerdConfig(),
		s.p.join("cni", "net.d", "10-ramvault-dev.conflist"): fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q, "rangeStart": "10.88.77.10"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}}
  ]
}
`, cniNetwork, BridgeName, PodCIDR, s.p.join("cni", "ipam")),
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return err
		}
	}
	return nil
}

const cniNetwork = "ramvault-dev"

func (s *Stack) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %q}
authorization: {mode: Webhook}
address: %s
tlsCertFile: %q
tlsPrivateKeyFile: %q
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://%s
podLogsDir: %q
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
registerNode: true
rotateCertificates: false
serializeImagePulls: false
syncFrequency: 5s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
makeIPTablesUtilChains: false
`, s.p.pki("ca.crt"), Gateway, s.p.pki("kubelet.crt"), s.p.pki("kubelet.key"), s.p.containerdSock(), s.p.join("pod-logs"))
}

func (s *Stack) containerdConfig() string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  stream_server_address = "127.0.0.1"
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
`, s.p.join("containerd", "root"), s.p.join("containerd", "state"), s.p.containerdSock(), s.p.containerdSock()+".ttrpc",
		s.p.join("opt"), PauseImage, s.p.join("runc"), s.p.join("cni", "net.d"))
}

func (s *Stack) startEtcd(ctx context.Context) error {
	c, err := s.start("etcd", []string{s.bin("etcd"), "-data-dir", s.p.join("etcd", "data"),
		"-listen-client-url", "http://127.0.0.1:23790", "-listen-peer-url", "http://127.0.0.1:23800"}, startOpts{})
	if err != nil {
		return err
	}
	return c.waitFor(ctx, 20*time.Second, httpOK(nil, "http://127.0.0.1:23790/health"))
}

func (s *Stack) startAPIServer(ctx context.Context) error {
	p := s.p.pki
	c, err := s.start("kube-apiserver", []string{s.bin("kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:23790",
		"--bind-address=" + Gateway, "--advertise-address=" + Gateway, fmt.Sprintf("--secure-port=%d", APIServerPort),
		"--tls-cert-file=" + p("apiserver.crt"), "--tls-private-key-file=" + p("apiserver.key"),
		"--client-ca-file=" + p("ca.crt"),
		"--service-account-key-file=" + p("sa.pub"), "--service-account-signing-key-file=" + p("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--api-audiences=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction,PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
		"--enable-aggregator-routing=true",
		"--kubelet-client-certificate=" + p("apiserver-kubelet-client.crt"), "--kubelet-client-key=" + p("apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--allow-privileged=true",
		"--profiling=false",
		"--cert-dir=" + s.p.join("pki", "apiserver-generated"),
	}, startOpts{})
	if err != nil {
		return err
	}
	tc, err := s.adminTLS()
	if err != nil {
		return err
	}
	return c.waitFor(ctx, 60*time.Second, httpOK(tc, fmt.Sprintf("https://%s:%d/readyz", Gateway, APIServerPort)))
}

func (s *Stack) startContainerd(ctx context.Context) error {
	c, err := s.start("containerd", []string{"containerd", "--config", s.p.join("containerd", "config.toml")}, startOpts{})
	if err != nil {
		return err
	}
	if err := c.waitFor(ctx, 20*time.Second, func(ctx context.Context) error {
		_, err := run(ctx, "ctr", "-a", s.p.containerdSock(), "version")
		return err
	}); err != nil {
		return err
	}
	return s.importImages(ctx)
}

func (s *Stack) startVault(ctx context.Context) error {
	c, err := s.start("vault", []string{s.bin("vault"), "server", "-dev",
		fmt.Sprintf("-dev-listen-address=%s:%d", Gateway, VaultPort),
		"-dev-plugin-dir=" + s.p.join("vault", "plugins")},
		// The root token goes through the environment, not argv (ps shows argv);
		// HOME keeps the dev server's ~/.vault-token inside the state root.
		startOpts{env: []string{"VAULT_DEV_ROOT_TOKEN_ID=" + s.env.VaultToken, "HOME=" + s.p.join("vault"), "VAULT_LOG_LEVEL=warn"}})
	if err != nil {
		return err
	}
	return c.waitFor(ctx, 30*time.Second, httpOK(nil, s.env.VaultAddr+"/v1/sys/health"))
}

func (s *Stack) startKubelet(ctx context.Context) error {
	root := s.p.kubeletRoot()
	// The kubelet's root must be a shared mount so the tmpfs volumes it
	// mounts (in its private mount namespace) propagate to runc.
	if _, err := run(ctx, "mount", "--bind", root, root); err != nil {
		return err
	}
	if _, err := run(ctx, "mount", "--make-shared", root); err != nil {
		return err
	}
	// The kubelet sets a few sysctls at start; give it private copies so the
	// host's values stay as they are.
	var binds []string
	for _, f := range []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"} {
		b, err := os.ReadFile("/proc/sys/" + f)
		if err != nil {
			return err
		}
		copyf := s.p.join("run", "sysctl-"+strings.ReplaceAll(f, "/", "_"))
		if err := os.WriteFile(copyf, b, 0o644); err != nil {
			return err
		}
		binds = append(binds, fmt.Sprintf("mount --bind %s /proc/sys/%s", copyf, f))
	}
	script := "set -e; " + strings.Join(binds, "; ") + `; exec "$@"`
	c, err := s.start("kubelet", []string{"unshare", "-m", "--propagation", "unchanged", "/bin/sh", "-c", script, "kubelet",
		s.bin("kubelet"), "--config=" + s.p.join("kubelet-config.yaml"), "--kubeconfig=" + s.p.join("kubelet.kubeconfig"),
		"--root-dir=" + root, "--hostname-override=" + NodeName, "--node-ip=" + Gateway,
		"--volume-plugin-dir=" + s.p.join("kubelet-plugins"), "--v=" + cmp.Or(os.Getenv("RAMVAULT_KUBELET_V"), "1")}, startOpts{})
	if err != nil {
		return err
	}
	cs, err := s.client()
	if err != nil {
		return err
	}
	return c.waitFor(ctx, 60*time.Second, func(ctx context.Context) error { return nodeReady(ctx, cs) })
}

func (s *Stack) startControllerManager(ctx context.Context) error {
	c, err := s.start("kube-controller-manager", []string{s.bin("kube-controller-manager"),
		"--kubeconfig=" + s.p.adminKubeconfig(),
		"--authentication-kubeconfig=" + s.p.adminKubeconfig(), "--authorization-kubeconfig=" + s.p.adminKubeconfig(),
		"--controllers=serviceaccount-controller,root-ca-certificate-publisher-controller,namespace-controller," +
			"garbage-collector-controller,deployment-controller,replicaset-controller,statefulset-controller," +
			"job-controller,cronjob-controller,endpoints-controller,endpointslice-controller," +
			"endpointslice-mirroring-controller,disruption-controller,ttl-after-finished-controller,pod-garbage-collector-controller," +
			// lifts the node's initial not-ready taint once the kubelet reports Ready
			"node-lifecycle-controller",
		"--node-monitor-period=1s",
		"--root-ca-file=" + s.p.pki("ca.crt"),
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10257",
		"--cert-dir=" + s.p.join("pki", "kcm-generated"),
	}, startOpts{})
	if err != nil {
		return err
	}
	return c.waitFor(ctx, 60*time.Second, httpOK(insecure(), "https://127.0.0.1:10257/healthz"))
}

func (s *Stack) startScheduler(ctx context.Context) error {
	c, err := s.start("kube-scheduler", []string{s.bin("kube-scheduler"),
		"--kubeconfig=" + s.p.adminKubeconfig(),
		"--authentication-kubeconfig=" + s.p.adminKubeconfig(), "--authorization-kubeconfig=" + s.p.adminKubeconfig(),
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10259",
		"--cert-dir=" + s.p.join("pki", "scheduler-generated"),
	}, startOpts{})
	if err != nil {
		return err
	}
	return c.waitFor(ctx, 60*time.Second, httpOK(insecure(), "https://127.0.0.1:10259/healthz"))
}

func (s *Stack) client() (*kubernetes.Clientset, error) {
	return KubeClient(s.p.adminKubeconfig())
}

// KubeClient returns a clientset for a kubeconfig file.
func KubeClient(kubeconfig string) (*kubernetes.Clientset, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = 100, 200
	return kubernetes.NewForConfig(rc)
}

func nodeReady(ctx context.Context, cs kubernetes.Interface) error {
	n, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1Get)
	if err != nil {
		return err
	}
	for _, t := range n.Spec.Taints {
		if t.Key == corev1.TaintNodeNotReady {
			return fmt.Errorf("node %s still has the %s taint", NodeName, t.Key)
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("node %s not Ready: %s", NodeName, c.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition yet", NodeName)
}

func (s *Stack) adminTLS() (*tls.Config, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", s.p.adminKubeconfig())
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(rc.CertFile, rc.KeyFile)
	if err != nil {
		return nil, err
	}
	pool, err := certPool(rc.CAFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}, nil
}

// insecure is for the local healthz endpoints of kcm and the scheduler,
// which serve a self-signed certificate generated at start.
func insecure() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } //nolint:gosec // loopback health probe only

func httpOK(tc *tls.Config, url string) func(context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tc, DialContext: (&net.Dialer{Timeout: time.Second}).DialContext}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}
