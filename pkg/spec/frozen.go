package spec

import (
	"encoding/json"
	"fmt"
	"strings"
)

// MaxFrozenBytes bounds the frozen annotations, one argument of the agent:
// Linux refuses to exec with an argument over 128 KiB (MAX_ARG_STRLEN), and
// the container would never start.
const MaxFrozenBytes = 96 << 10

// EncodeFrozen is the agent's --spec: the Pod's ramvault.io/ annotations as
// the injector checked them, as one JSON object (keys sorted). The agent acts
// on exactly these: container arguments cannot change once the Pod exists,
// while its annotations can (`kubectl annotate`), and the agent never reads
// them.
func EncodeFrozen(annotations map[string]string) (string, error) {
	own := map[string]string{}
	for k, v := range annotations {
		if strings.HasPrefix(k, Prefix) && k != Prefix+"status" {
			own[k] = v
		}
	}
	b, err := json.Marshal(own)
	if err != nil {
		return "", err
	}
	if len(b) > MaxFrozenBytes {
		return "", fmt.Errorf("the %s annotations take %d bytes, and the agent receives them in one argument of at most %d: shorten the templates, or split the Pod's secrets", Prefix, len(b), MaxFrozenBytes)
	}
	return string(b), nil
}

// DecodeFrozen reads what EncodeFrozen wrote.
func DecodeFrozen(s string) (map[string]string, error) {
	var out map[string]string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("want a JSON object of %s annotations: %w", Prefix, err)
	}
	for k := range out {
		if !strings.HasPrefix(k, Prefix) {
			return nil, fmt.Errorf("%q is not a %s annotation", k, Prefix)
		}
	}
	return out, nil
}
