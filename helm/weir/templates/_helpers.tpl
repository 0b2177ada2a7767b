{{- define "weir.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "weir.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "weir.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "weir.adminSecret" -}}
{{- .Values.adminToken.existingSecret | default (printf "%s-admin" (include "weir.fullname" .)) -}}
{{- end -}}

{{- define "weir.readSecret" -}}
{{- .Values.readToken.existingSecret | default (printf "%s-read" (include "weir.fullname" .)) -}}
{{- end -}}

{{- define "weir.clusterSecret" -}}
{{- .Values.cluster.secret.existingSecret | default (printf "%s-cluster" (include "weir.fullname" .)) -}}
{{- end -}}

{{- define "weir.clustered" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end -}}
{{- end -}}

{{- define "weir.snapshotSecret" -}}
{{- .Values.snapshot.url.existingSecret | default (printf "%s-snapshot" (include "weir.fullname" .)) -}}
{{- end -}}

{{- define "weir.snapshots" -}}
{{- if or .Values.snapshot.url.value .Values.snapshot.url.existingSecret }}true{{ end -}}
{{- end -}}
