{{/* Chart name, truncated to the 63 characters DNS labels allow. */}}
{{- define "vault-injector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vault-injector.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vault-injector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels. `app.kubernetes.io/name: vault-injector` is fixed (not
nameOverride) because the webhook's config (injector.selfLabels) and the
objectSelector use it to never mutate the injector's own pods.
*/}}
{{- define "vault-injector.selectorLabels" -}}
app.kubernetes.io/name: vault-injector
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vault-injector.labels" -}}
helm.sh/chart: {{ include "vault-injector.chart" . }}
{{ include "vault-injector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "vault-injector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vault-injector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vault-injector.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "vault-injector.agentImage" -}}
{{- $repo := default .Values.image.repository .Values.agent.image.repository }}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.agent.image.tag }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{/* Secret holding tls.crt/tls.key (auto and certManager modes). */}}
{{- define "vault-injector.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" }}
{{- required "tls.secret.name is required when tls.mode=secret" .Values.tls.secret.name }}
{{- else }}
{{- default (printf "%s-tls" (include "vault-injector.fullname" .)) .Values.tls.secretName }}
{{- end }}
{{- end }}

{{/* The MutatingWebhookConfiguration is cluster-scoped: qualify it by namespace. */}}
{{- define "vault-injector.webhookConfigName" -}}
{{- printf "%s-%s" (include "vault-injector.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vault-injector.leaseName" -}}
{{- default (printf "%s-tls-leader" (include "vault-injector.fullname" .)) .Values.tls.auto.leaseName }}
{{- end }}

{{/*
Fixed paths inside the webhook pod. The config file points at them, so they
are not values: what the chart mounts and what the config names cannot
disagree. Siblings of /etc/vault-injector, not inside it: the runtime cannot
create a mount point inside the read-only config mount.
*/}}
{{- define "vault-injector.policyDir" -}}/etc/vault-injector-policy{{- end }}
{{- define "vault-injector.approleDir" -}}/etc/vault-injector-approle{{- end }}

{{/* True (non-empty) when a policy file is mounted: inline or existing. */}}
{{- define "vault-injector.policyEnabled" -}}
{{- if or .Values.policy.document .Values.policy.existingConfigMap }}true{{ end }}
{{- end }}

{{- define "vault-injector.policyConfigMapName" -}}
{{- default (printf "%s-policy" (include "vault-injector.fullname" .)) .Values.policy.existingConfigMap }}
{{- end }}

{{/*
The webhook logs in to Vault with a JWT (kubernetes/jwt) only when it has a
role; "projected" when the chart mounts a token with its own audience,
"serviceaccount" when it uses the pod's automounted token.
*/}}
{{- define "vault-injector.webhookToken" -}}
{{- $a := .Values.webhookAuth }}
{{- if and $a.role (ne $a.method "approle") }}
{{- if $a.tokenAudience }}projected{{ else }}serviceaccount{{ end }}
{{- end }}
{{- end }}

{{/*
The pod needs its service-account token for the API server (auto-TLS,
Events) or for the webhook's own Vault login with the default token.
*/}}
{{- define "vault-injector.automountToken" -}}
{{- if or (eq .Values.tls.mode "auto") .Values.events.enabled (eq (include "vault-injector.webhookToken" .) "serviceaccount") }}true{{ else }}false{{ end }}
{{- end }}
