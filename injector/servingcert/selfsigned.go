package servingcert

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ramvault/ramvault/injector/kube"
)

// SelfSignedOptions are the settings of a SelfSigned.
type SelfSignedOptions struct {
	Namespace     string        // of the injector: its Secret
	SecretName    string        // holds the CA and the serving certificate
	WebhookConfig string        // the MutatingWebhookConfiguration whose caBundle is kept current
	Hosts         []string      // of the serving certificate
	CertValidity  time.Duration // of the serving certificate
	CAValidity    time.Duration
	PollInterval  time.Duration // how often every replica reads the Secret
	Resync        time.Duration // how often the leader checks the Secret and the caBundle
	CAPropagation time.Duration // the leader's wait between trusting a new CA and serving a certificate it signed
	ErrorBackoff  time.Duration // after a failed reconcile; 0: 5s
}

// Elector runs lead while this replica leads, again each time it becomes
// the leader, until ctx ends (leaderelection.Elector is one).
type Elector interface {
	Run(ctx context.Context, lead func(context.Context))
}

// SelfSigned manages the webhook's own certificates. Every replica serves
// what the Secret holds, read every PollInterval. One replica, elected with
// the Elector, writes: it creates the CA and the serving certificate, renews
// each at two thirds of its lifetime, and keeps the caBundle of the
// webhook configuration equal to the Secret's CA bundle. A new CA is added
// to the caBundle (beside the old one) and given CAPropagation to reach the
// apiservers before any replica serves a certificate it signed, so that
// rotation never fails an admission.
type SelfSigned struct {
	holder
	client  *kube.Client
	opts    SelfSignedOptions
	issuer  issuer
	elector Elector
	log     *slog.Logger
	now     func() time.Time
}

// NewSelfSigned returns the self-managed certificates of o, kept through
// client while elector says this replica leads. loaded, if not nil, is
// told the expiry of each certificate put in use.
func NewSelfSigned(client *kube.Client, o SelfSignedOptions, elector Elector, log *slog.Logger, loaded func(notAfter time.Time)) *SelfSigned {
	return &SelfSigned{holder: holder{loaded: loaded}, client: client, opts: o, elector: elector,
		log: log.With("secret", o.Namespace+"/"+o.SecretName), now: time.Now,
		issuer: issuer{hosts: o.Hosts, certValidity: o.CertValidity, caValidity: o.CAValidity}}
}

// Start follows the Secret and campaigns for leadership until ctx ends.
func (s *SelfSigned) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { s.follow(ctx) })
	s.elector.Run(ctx, s.lead)
	wg.Wait()
	return nil
}

// follow loads the Secret's serving certificate now and every PollInterval.
func (s *SelfSigned) follow(ctx context.Context) {
	t := time.NewTicker(s.opts.PollInterval)
	defer t.Stop()
	for {
		if err := s.loadSecret(ctx); err != nil {
			s.log.Warn("read the certificate Secret", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *SelfSigned) loadSecret(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, kube.Timeout)
	defer cancel()
	sec := &corev1.Secret{}
	err := s.client.Secrets(s.opts.Namespace).Get(ctx, s.opts.SecretName, sec)
	if apierrors.IsNotFound(err) {
		s.log.Info("waiting for the leader to write the certificate Secret")
		return nil
	}
	if err != nil {
		return err
	}
	p := parsePKI(sec.Data)
	if p.serving == nil {
		return fmt.Errorf("no valid %s and %s in the Secret; the leader will write new ones", secretTLSCert, secretTLSKey)
	}
	s.use(p)
	return nil
}

func (s *SelfSigned) use(p *pki) {
	if s.set(p.serving) {
		c := p.serving.Leaf
		s.log.Info("serving certificate loaded", "serial", c.SerialNumber.String(), "notAfter", c.NotAfter)
	}
}

// lead keeps the Secret and the caBundle current while ctx lasts.
func (s *SelfSigned) lead(ctx context.Context) {
	s.log.Info("leading: this replica now writes the certificates")
	backoff := s.opts.ErrorBackoff
	if backoff == 0 {
		backoff = 5 * time.Second
	}
	for {
		wait := s.opts.Resync
		next, err := s.reconcile(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.log.Error("keep the webhook certificates current", "err", err)
			wait = backoff
		case next.Sub(s.now()) < wait:
			wait = max(next.Sub(s.now()), 0)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// reconcile brings the Secret and the caBundle to what they should be now,
// and returns when it is next due.
func (s *SelfSigned) reconcile(ctx context.Context) (time.Time, error) {
	cctx, cancel := context.WithTimeout(ctx, kube.Timeout)
	sec := &corev1.Secret{}
	err := s.client.Secrets(s.opts.Namespace).Get(cctx, s.opts.SecretName, sec)
	cancel()
	if apierrors.IsNotFound(err) {
		sec, err = nil, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read Secret %s/%s: %w", s.opts.Namespace, s.opts.SecretName, err)
	}
	cur := &pki{}
	if sec != nil {
		cur = parsePKI(sec.Data)
	}
	p, newCA, err := s.issuer.next(cur, s.now())
	if err != nil {
		return time.Time{}, err
	}
	// Trust first: the caBundle must hold a new CA before anything it
	// signed is served.
	patched, err := s.patchCABundle(ctx, p.bundlePEM)
	if err != nil {
		return time.Time{}, err
	}
	if patched && newCA {
		s.log.Info("new CA added to the caBundle; waiting for the apiservers to trust it", "wait", s.opts.CAPropagation.String())
		if err := sleep(ctx, s.opts.CAPropagation); err != nil {
			return time.Time{}, err
		}
	}
	if p != cur {
		if err := s.writeSecret(ctx, sec, p); err != nil {
			return time.Time{}, err
		}
		c := p.serving.Leaf
		s.log.Info("certificate Secret written", "newCA", newCA, "serial", c.SerialNumber.String(), "notAfter", c.NotAfter)
	}
	s.use(p)
	return p.nextCheck(), nil
}

func (s *SelfSigned) writeSecret(ctx context.Context, sec *corev1.Secret, p *pki) error {
	ctx, cancel := context.WithTimeout(ctx, kube.Timeout)
	defer cancel()
	secrets := s.client.Secrets(s.opts.Namespace)
	if sec == nil {
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: s.opts.SecretName, Namespace: s.opts.Namespace, Labels: map[string]string{
				"app.kubernetes.io/name": "ramvault-injector", "app.kubernetes.io/managed-by": "ramvault-injector"}},
			Type: corev1.SecretTypeTLS,
			Data: p.data(),
		}
		if err := secrets.Create(ctx, sec, &corev1.Secret{}); err != nil {
			return fmt.Errorf("create Secret %s/%s: %w", s.opts.Namespace, s.opts.SecretName, err)
		}
		return nil
	}
	sec = sec.DeepCopy()
	sec.Data = p.data()
	// The resourceVersion read makes a stale leader's write fail.
	if err := secrets.Update(ctx, s.opts.SecretName, sec, &corev1.Secret{}); err != nil {
		return fmt.Errorf("update Secret %s/%s: %w", s.opts.Namespace, s.opts.SecretName, err)
	}
	return nil
}

// patchCABundle sets the caBundle of every webhook of the configuration to
// bundle, and says whether it had to. A missing configuration is logged, not
// an error: the replicas still serve, and the next resync tries again.
func (s *SelfSigned) patchCABundle(ctx context.Context, bundle []byte) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, kube.Timeout)
	defer cancel()
	mwcs := s.client.WebhookConfigs()
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	err := mwcs.Get(ctx, s.opts.WebhookConfig, mwc)
	if apierrors.IsNotFound(err) {
		s.log.Warn("MutatingWebhookConfiguration not found: apply the manifests (or fix --webhook-config-name); its caBundle is set once it exists", "name", s.opts.WebhookConfig)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read MutatingWebhookConfiguration %s: %w", s.opts.WebhookConfig, err)
	}
	type clientConfig struct {
		CABundle []byte `json:"caBundle"`
	}
	type webhook struct {
		Name         string       `json:"name"`
		ClientConfig clientConfig `json:"clientConfig"`
	}
	var hooks []webhook
	for _, w := range mwc.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, bundle) {
			hooks = append(hooks, webhook{Name: w.Name, ClientConfig: clientConfig{CABundle: bundle}})
		}
	}
	if len(hooks) == 0 {
		return false, nil
	}
	// A strategic merge patch: webhooks merge by name. The resourceVersion
	// makes it fail if the configuration changed since it was read.
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": mwc.ResourceVersion},
		"webhooks": hooks,
	})
	if err != nil {
		return false, err
	}
	if err := mwcs.Patch(ctx, s.opts.WebhookConfig, types.StrategicMergePatchType, patch, "ramvault-injector"); err != nil {
		return false, fmt.Errorf("patch the caBundle of MutatingWebhookConfiguration %s: %w", s.opts.WebhookConfig, err)
	}
	s.log.Info("caBundle patched", "webhookConfiguration", s.opts.WebhookConfig, "webhooks", len(hooks))
	return true, nil
}

// sleep waits d, or less if ctx ends first (then returns its error).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
