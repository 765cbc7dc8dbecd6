package spec

// The contract between the injector and the agent: where the injector mounts
// things in the agent containers, the agent's ports, and the flags it passes.
// Both sides import these constants; neither hard-codes them.
const (
	// AgentSecretsDir is where the agent sees the secrets volume (read-write).
	AgentSecretsDir = "/ramvault/secrets"
	// AgentStateDir is the agent-only Memory emptyDir holding its Vault token
	// and leases, shared by the init and sidecar containers of one Pod.
	AgentStateDir = "/ramvault/state"
	// AgentTokenDir holds the projected service-account token (file "token").
	AgentTokenDir = "/ramvault/token"

	// AgentBinary is the agent's path in its image (the Dockerfile's agent
	// target), for the native sidecar's postStart hook.
	AgentBinary = "/ramvault-agent"
	// AwaitStartup is the agent command that waits until the agent in the
	// same container has written every secret (its /startup answers 200).
	AwaitStartup = "await-startup"

	// AgentSleep is the agent command that waits the duration given and
	// exits: the classic sidecar's preStop hook (the image has no shell).
	AgentSleep = "sleep"

	// AgentHealthPort serves /healthz, /readyz, /startup and /restart-probe.
	AgentHealthPort = 8099
	// AgentMetricsPort serves Prometheus metrics.
	AgentMetricsPort = 9102

	// StatusFile is written beside the secrets: names, versions, lease expiry
	// times, never values.
	StatusFile = ".ramvault-status.json"
)

// Agent flags the injector sets (cluster defaults and values it derived, such
// as the role from the service account). The annotations of --spec win over
// them where both exist (the injector checked both).
const (
	FlagMode          = "mode"          // init | sidecar
	FlagVaultAddr     = "vault-addr"    // cluster default Vault address
	FlagVaultCACert   = "vault-ca-cert" // PEM file of the Vault CA
	FlagVaultTLSName  = "vault-tls-server-name"
	FlagRole          = "role"           // derived: the service account name
	FlagSignalProcess = "signal-process" // derived: first target container's command
	// FlagSignalMountPath replaces FlagSignalProcess when no process name
	// is known (a target container without command: the image's
	// entrypoint): the agent signals the main process of every container
	// that mounts the secrets volume at this path. In the Pod's shared PID
	// namespace, a container's main process is one whose parent PID is 0,
	// other than the pause process (PID 1) and the agent; it is a target's
	// when its /proc/<pid>/mountinfo has a mount at this path of the same
	// device (major:minor) as the agent's own AgentSecretsDir.
	FlagSignalMountPath = "signal-mount-path"
	FlagSpec            = "spec"        // the ramvault.io/ annotations the injector checked (EncodeFrozen)
	FlagAnnotations     = "annotations" // by hand only: a file of annotations in the downward-API format
	FlagTokenFile       = "token-file"
	FlagSecretsDir      = "secrets-dir"
	FlagStateDir        = "state-dir"
)
