{{/* The name in object names. */}}
{{- define "modelplane.name" -}}
{{- default "modelplane" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of object names: the release name, with the chart name unless it has it. */}}
{{- define "modelplane.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := include "modelplane.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object. app.kubernetes.io/name stays "modelplane": the autoscaler's peer selector reads it. */}}
{{- define "modelplane.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: modelplane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelplane
{{- end }}

{{/* The operator pods' selector (also their labels). */}}
{{- define "modelplane.selectorLabels" -}}
app.kubernetes.io/name: modelplane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "modelplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-operator" (include "modelplane.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image: repository@digest, or repository:tag (default the appVersion). */}}
{{- define "modelplane.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The admission webhook: its Service, its ValidatingWebhookConfiguration, its certificate Secret. */}}
{{- define "modelplane.webhookService" -}}
{{ include "modelplane.fullname" . }}-webhook
{{- end }}
{{- define "modelplane.webhookConfiguration" -}}
{{ include "modelplane.fullname" . }}
{{- end }}
{{- define "modelplane.webhookCertSecret" -}}
{{ include "modelplane.fullname" . }}-webhook-cert
{{- end }}

{{/* The Secret holding the stream key, or "" when the operator uses the key kept in the store. */}}
{{- define "modelplane.streamKeySecret" -}}
{{- $k := .Values.gateway.streamKey }}
{{- if $k.existingSecret }}
{{- $k.existingSecret }}
{{- else if $k.generate }}
{{- printf "%s-stream-key" (include "modelplane.fullname" .) }}
{{- end }}
{{- end }}

{{/* The claim the embedded store is kept on. */}}
{{- define "modelplane.filesClaim" -}}
{{- default (printf "%s-files" (include "modelplane.fullname" .)) .Values.files.directory.existingClaim }}
{{- end }}

{{- define "modelplane.storeClaim" -}}
{{- default (printf "%s-store" (include "modelplane.fullname" .)) .Values.store.embedded.existingClaim }}
{{- end }}
