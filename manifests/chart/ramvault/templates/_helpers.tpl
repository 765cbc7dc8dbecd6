{{/*
Names. Every object is named after the release, the cluster-scoped ones
(ClusterRole, ClusterRoleBinding, MutatingWebhookConfiguration) too, so two
releases never share one: release "ramvault" gets the kustomize base's names.
*/}}
{{- define "ramvault.prefix" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "ramvault.fullname" -}}
{{- printf "%s-injector" (include "ramvault.prefix" .) -}}
{{- end -}}

{{- define "ramvault.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{- .Values.tls.secret.name -}}
{{- else -}}
{{- printf "%s-tls" (include "ramvault.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The base's labels, and Helm's recommended ones. */}}
{{- define "ramvault.labels" -}}
{{ include "ramvault.selectorLabels" . }}
app.kubernetes.io/part-of: ramvault
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* instance keeps two releases in one namespace apart. */}}
{{- define "ramvault.selectorLabels" -}}
app.kubernetes.io/name: ramvault-injector
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ramvault.image" -}}
{{- printf "%s:%s" .repository (.tag | default .appVersion) -}}
{{- end -}}

{{/* config.yaml: the values' config, and agent-image from agentImage. */}}
{{- define "ramvault.config" -}}
{{- $c := deepCopy .Values.config -}}
{{- $_ := set $c "agent-image" (include "ramvault.image" (dict "repository" .Values.agentImage.repository "tag" .Values.agentImage.tag "appVersion" .Chart.AppVersion)) -}}
{{- if .Values.vaultK8sAnnotations.enabled -}}
{{- $_ := set $c "vault-k8s-annotations" true -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* Checks the schema cannot express. */}}
{{- define "ramvault.validate" -}}
{{- if and .Values.podDisruptionBudget.enabled (ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicas)) -}}
{{- fail (printf "podDisruptionBudget.minAvailable (%d) must be less than replicas (%d), or no node drain ever finishes: raise replicas or set podDisruptionBudget.enabled=false" (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicas)) -}}
{{- end -}}
{{- end -}}
