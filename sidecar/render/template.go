package render

import (
	"fmt"

	"github.com/ramvault/ramvault/pkg/tmpl"
)

// execute renders the file's template. pkg/tmpl bounds the render (output,
// work, steps, time) and rebuilds its errors from the template's source, so
// they name the annotation, the position and the expression, never a value:
// render errors are logged at every retry and can end in a container's
// termination message.
func (r *Renderer) execute(f Input) ([]byte, error) {
	in := tmpl.Input{Lookup: f.Lookup}
	if f.Data != nil {
		in.Dot = &tmpl.Secret{Data: f.Data, LeaseID: f.LeaseID, LeaseDuration: int(f.LeaseDuration.Seconds()), Renewable: f.Renewable}
	}
	if r.limits.Clock != nil {
		in.Now = r.limits.Clock.Now
	}
	out, err := r.tmpl.Execute(in)
	if err != nil {
		return nil, fmt.Errorf("render template of secret %q: %w", r.secret.Name, err)
	}
	return out, nil
}
