{{/*
Names: "truthloop" for a release called truthloop (or one whose name contains it), else
"<release>-truthloop"; cut to 63 characters less the longest suffix the chart adds.
*/}}
{{- define "truthloop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "truthloop.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "truthloop.operatorName" -}}{{ include "truthloop.fullname" . }}-operator{{- end }}
{{- define "truthloop.feedbackName" -}}{{ include "truthloop.fullname" . }}-feedback{{- end }}
{{- define "truthloop.certSecretName" -}}{{ include "truthloop.fullname" . }}-webhook-cert{{- end }}
{{/* Both webhook configurations carry this name; the operator may patch only it. */}}
{{- define "truthloop.webhookName" -}}{{ include "truthloop.fullname" . }}{{- end }}

{{/* The write token's Secret: the chart's, or the user's. Its copies carry the same name. */}}
{{- define "truthloop.tokenSecretName" -}}
{{- .Values.token.existingSecret | default (printf "%s-token" (include "truthloop.fullname" .)) }}
{{- end }}

{{- define "truthloop.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "truthloop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: truthloop
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "operator"). */}}
{{- define "truthloop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "truthloop.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "truthloop.componentLabels" -}}
{{ include "truthloop.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* repository[:tag][@digest] of (dict "image" <image values> "root" $), defaulting to the chart's. */}}
{{- define "truthloop.image" -}}
{{- $root := .root.Values.image }}
{{- $repository := .image.repository | default $root.repository }}
{{- $digest := .image.digest | default (ternary $root.digest "" (empty .image.repository)) }}
{{- $tag := .image.tag | default (ternary $root.tag "" (empty .image.repository)) | default .root.Chart.AppVersion }}
{{- if $digest }}{{ printf "%s@%s" $repository $digest }}{{ else }}{{ printf "%s:%s" $repository (toString $tag) }}{{ end }}
{{- end }}

{{/* A Kubernetes quantity given as a string or a number, printed without float notation. */}}
{{- define "truthloop.quantity" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}{{ int64 . }}{{ else }}{{ toString . }}{{ end }}
{{- end }}

{{- define "truthloop.feedbackUrl" -}}
http://{{ include "truthloop.feedbackName" . }}.{{ .Release.Namespace }}.svc:{{ .Values.feedback.service.port }}
{{- end }}

{{/* The restricted Pod Security profile: pod level, then container level. */}}
{{- define "truthloop.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "truthloop.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* nodeSelector, tolerations, affinity, priorityClassName and pull secrets of a component. */}}
{{- define "truthloop.scheduling" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The operator's RBAC, rule for rule the calls `truthloop.operator.kube.api_calls` declares (a test
holds the two equal). "served": the namespaces it serves (a ClusterRole when cluster-wide).
*/}}
{{- define "truthloop.servedRules" -}}
- apiGroups: [truthloop.dev]
  resources: [modelmonitors]
  verbs: [list, watch]
- apiGroups: [truthloop.dev]
  resources: [modelmonitors/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [pods, services]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.operator.restartExisting }}
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [get]
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: [get, patch]
{{- end }}
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [{{ include "truthloop.tokenSecretName" . }}]
  verbs: [get, patch]
{{- end }}

{{/* "own": the release namespace: the leader's Lease and the self-managed webhook certificate. */}}
{{- define "truthloop.ownRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [{{ include "truthloop.operatorName" . }}]
  verbs: [get, update]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
{{- if not .Values.operator.webhook.certificateSecret }}
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [{{ include "truthloop.certSecretName" . }}]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
{{- end }}
{{- end }}

{{/* "cluster": the caBundle of the two webhook configurations the chart creates. */}}
{{- define "truthloop.clusterRules" -}}
- apiGroups: [admissionregistration.k8s.io]
  resources: [mutatingwebhookconfigurations, validatingwebhookconfigurations]
  resourceNames: [{{ include "truthloop.webhookName" . }}]
  verbs: [get, patch]
{{- end }}
