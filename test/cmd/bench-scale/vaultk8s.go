package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/test/stack"
)

// vault-k8s's injector as its own deploy/ manifests ship it (v1.6.2), in a
// namespace of its own, serving only the vault-k8s side's namespace.
const (
	peerNamespace = "bench-scale-vault-k8s-injector"
	peerName      = "vault-injector"
	peerService   = "vault-agent-injector-svc"
	peerWebhook   = "bench-scale-vault-k8s" // the MutatingWebhookConfiguration; its one webhook is vault.hashicorp.com
	peerHook      = "vault.hashicorp.com"
	peerCPU       = "10m"
)

// peerChanges are the defaults of vault-k8s's shipped manifests this bench
// changes, and why; printed with the results.
var peerChanges = []string{
	"images localhost/vault-k8s:1.6.2 and localhost/vault:1.21.0 (built here from the module and the vault binary; no registry)",
	"AGENT_INJECT_VAULT_ADDR: the stack's Vault as Pods reach it (shipped: https://vault.$(NAMESPACE).svc:8200)",
	"AGENT_INJECT_CPU_REQUEST " + peerCPU + " (shipped 250m): 50 Pods × 250m do not fit on 2 cores; " + peerCPU + " is ramvault's own default request, so both sides ask the same (limits as shipped: 500m both)",
	"namespaceSelector: only the vault-k8s side's namespace (shipped: every namespace), so each injector serves its own",
	"1 replica without leader election (shipped: 2 with AGENT_INJECT_USE_LEADER_ELECTOR): one node, and the bench does not measure the injector's availability",
	"failurePolicy Ignore is kept as shipped, so the bench checks every Pod was injected",
	"its Vault role checks no token audience (ramvault's: vault): its agent logs in with the Pod's own service-account token, whose audience is the apiserver's",
}

// deployPeer creates vault-k8s's injector and its webhook and waits until
// it injects a Pod of namespace ns (a server-side dry run). The returned
// function deletes all of it.
func deployPeer(ctx context.Context, cs kubernetes.Interface, env stack.Env, ns string) (func(), error) {
	labels := map[string]string{"app.kubernetes.io/name": peerName, "app.kubernetes.io/instance": "bench-scale"}
	cleanup := func() {
		bg := context.Background()
		_ = cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(bg, peerWebhook, metav1.DeleteOptions{})
		_ = cs.RbacV1().ClusterRoleBindings().Delete(bg, "bench-scale-vault-injector", metav1.DeleteOptions{})
		_ = cs.RbacV1().ClusterRoles().Delete(bg, "bench-scale-vault-injector", metav1.DeleteOptions{})
		_ = cs.CoreV1().Namespaces().Delete(bg, peerNamespace, metav1.DeleteOptions{})
		_ = waitNamespaceGone(bg, cs, peerNamespace)
	}
	create := func(what string, err error) error {
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("vault-k8s %s: %w", what, err)
		}
		return nil
	}
	hosts := fmt.Sprintf("%s,%s.%s,%s.%s.svc", peerService, peerService, peerNamespace, peerService, peerNamespace)
	env1 := func(k, v string) corev1.EnvVar { return corev1.EnvVar{Name: k, Value: v} }
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health/ready", Port: intstr.FromInt32(8080), Scheme: corev1.URISchemeHTTPS}},
		FailureThreshold: 2, InitialDelaySeconds: 5, PeriodSeconds: 2, SuccessThreshold: 1, TimeoutSeconds: 5}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: peerName, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{ServiceAccountName: peerName, Containers: []corev1.Container{{
					Name: "sidecar-injector", Image: stack.VaultK8sImage, ImagePullPolicy: corev1.PullNever,
					Args: []string{"agent-inject"},
					Env: []corev1.EnvVar{
						{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
						{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
						env1("AGENT_INJECT_LISTEN", ":8080"), env1("AGENT_INJECT_LOG_LEVEL", "info"), env1("AGENT_INJECT_LOG_FORMAT", "standard"),
						env1("AGENT_INJECT_VAULT_ADDR", env.PodVaultAddr), env1("AGENT_INJECT_VAULT_IMAGE", stack.VaultAgentImage),
						env1("AGENT_INJECT_TLS_AUTO", peerWebhook), env1("AGENT_INJECT_TLS_AUTO_HOSTS", hosts),
						env1("AGENT_INJECT_USE_LEADER_ELECTOR", "false"), env1("AGENT_INJECT_DEFAULT_TEMPLATE", "map"),
						env1("AGENT_INJECT_CPU_REQUEST", peerCPU), env1("AGENT_INJECT_MEM_REQUEST", "64Mi"),
						env1("AGENT_INJECT_CPU_LIMIT", "500m"), env1("AGENT_INJECT_MEM_LIMIT", "128Mi"),
					},
					LivenessProbe: probe, ReadinessProbe: probe,
				}}},
			},
		},
	}
	rule := admissionregistrationv1.RuleWithOperations{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: ptr.To(admissionregistrationv1.NamespacedScope)}}
	hook := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: peerWebhook, Labels: labels},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    peerHook,
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1", "v1beta1"},
			ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
				Name: peerService, Namespace: peerNamespace, Path: ptr.To("/mutate"), Port: ptr.To[int32](443)}},
			Rules:             []admissionregistrationv1.RuleWithOperations{rule},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "app.kubernetes.io/name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{peerName}}}},
			FailurePolicy: ptr.To(admissionregistrationv1.Ignore),
		}},
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"namespace", func() error {
			_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: peerNamespace}}, metav1.CreateOptions{})
			return err
		}},
		{"service account", func() error {
			_, err := cs.CoreV1().ServiceAccounts(peerNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: peerName}}, metav1.CreateOptions{})
			return err
		}},
		{"cluster role", func() error {
			_, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "bench-scale-vault-injector"}, Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"}, Verbs: []string{"get", "list", "watch", "patch"}},
				{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
			}}, metav1.CreateOptions{})
			return err
		}},
		{"cluster role binding", func() error {
			_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "bench-scale-vault-injector"},
				RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "bench-scale-vault-injector"},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: peerName, Namespace: peerNamespace}}}, metav1.CreateOptions{})
			return err
		}},
		{"role", func() error {
			_, err := cs.RbacV1().Roles(peerNamespace).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: peerName}, Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"secrets", "configmaps"}, Verbs: []string{"create", "get", "watch", "list", "update"}},
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "patch", "delete"}},
			}}, metav1.CreateOptions{})
			return err
		}},
		{"role binding", func() error {
			_, err := cs.RbacV1().RoleBindings(peerNamespace).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: peerName},
				RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: peerName},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: peerName, Namespace: peerNamespace}}}, metav1.CreateOptions{})
			return err
		}},
		{"service", func() error {
			_, err := cs.CoreV1().Services(peerNamespace).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: peerService, Labels: labels},
				Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 443, TargetPort: intstr.FromInt32(8080)}}}}, metav1.CreateOptions{})
			return err
		}},
		{"webhook", func() error {
			_, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, hook, metav1.CreateOptions{})
			return err
		}},
		{"deployment", func() error {
			_, err := cs.AppsV1().Deployments(peerNamespace).Create(ctx, deploy, metav1.CreateOptions{})
			return err
		}},
	}
	if err := waitNamespaceGone(ctx, cs, peerNamespace); err != nil { // a previous run's, still terminating
		return nil, err
	}
	for _, s := range steps {
		if err := create(s.what, s.do()); err != nil {
			cleanup()
			return nil, err
		}
	}
	if err := waitPeerInjecting(ctx, cs, ns); err != nil {
		cleanup()
		return nil, err
	}
	return cleanup, nil
}

// waitPeerInjecting dry-runs an annotated Pod in ns until vault-k8s's
// webhook answers it with its agent: the injector is up and has written its
// CA into the webhook (with failurePolicy Ignore, a Pod admitted before
// that is simply not injected).
func waitPeerInjecting(ctx context.Context, cs kubernetes.Interface, ns string) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-scale-check", Annotations: map[string]string{
			"vault.hashicorp.com/agent-inject": "true", "vault.hashicorp.com/role": "check",
			"vault.hashicorp.com/agent-inject-secret-check": "secret/data/check"}},
		Spec: corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: stack.BusyboxImage, Command: []string{"true"}}}},
	}
	lastErr := errors.New("no answer yet")
	err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		out, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			lastErr = err
			return false, nil
		}
		if injectedBy(out) == vaultK8sSide {
			return true, nil
		}
		lastErr = errors.New("the Pod was admitted without vault-k8s's agent")
		return false, nil
	})
	if err != nil {
		pods, _ := cs.CoreV1().Pods(peerNamespace).List(ctx, metav1.ListOptions{})
		desc := ""
		for i := range pods.Items {
			desc += stack.DescribePod(cs, peerNamespace, pods.Items[i].Name, &pods.Items[i])
		}
		return fmt.Errorf("vault-k8s's injector does not inject: %v (%w)\n%s", lastErr, err, desc)
	}
	return nil
}

// waitNamespaceGone waits while namespace ns is terminating.
func waitNamespaceGone(ctx context.Context, cs kubernetes.Interface, ns string) error {
	err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || (err == nil && n.Status.Phase != corev1.NamespaceTerminating), nil
	})
	if err != nil {
		return fmt.Errorf("namespace %s still terminating: %w", ns, err)
	}
	return nil
}
