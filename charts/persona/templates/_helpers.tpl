{{/* The chart's name, at most 63 characters. */}}
{{- define "persona.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The operator's object names: <release>-operator, or <release> when the release is already named after the operator. */}}
{{- define "persona.operator" -}}
{{- if contains "operator" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "persona.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: persona
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "persona.operatorSelector" -}}
app.kubernetes.io/name: persona-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "persona.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* "true" when the operator watches every namespace (ClusterRole), empty when one. */}}
{{- define "persona.clusterScoped" -}}
{{- if eq .Values.operator.watchNamespace "" -}}true{{- end -}}
{{- end -}}

{{/* The labels of one alert: its severity and prometheus.rules.alertLabels. Takes (dict "root" . "severity" S). */}}
{{- define "persona.alertLabels" -}}
severity: {{ .severity }}
{{- with .root.Values.prometheus.rules.alertLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}
