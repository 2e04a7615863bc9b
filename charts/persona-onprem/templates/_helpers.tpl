{{- define "onprem.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: persona
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "onprem.selector" -}}
app.kubernetes.io/name: persona-{{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "onprem.name" -}}
{{- printf "%s-%s" .root.Release.Name .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "onprem.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The pod security context every trusted-zone pod runs with. */}}
{{- define "onprem.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "onprem.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment shared by the gateway and the de-tokenizer: bus and KMS. */}}
{{- define "onprem.commonEnv" -}}
- name: PERSONA_BUS_REDIS
  value: {{ .Values.bus.redis | quote }}
{{- if .Values.bus.passwordSecret.name }}
- name: PERSONA_BUS_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.bus.passwordSecret.name | quote }}
      key: {{ .Values.bus.passwordSecret.key | quote }}
{{- end }}
- name: PERSONA_KMS
  value: {{ .Values.kms.provider | quote }}
{{- if eq .Values.kms.provider "aws" }}
- name: PERSONA_KMS_KEY_ID
  value: {{ .Values.kms.keyId | quote }}
{{- with .Values.kms.endpoint }}
- name: PERSONA_KMS_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.kms.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- if .Values.kms.credentialsSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kms.credentialsSecret | quote }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kms.credentialsSecret | quote }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
{{- end }}
- name: PERSONA_KEY_CACHE_MAX_AGE
  value: {{ .Values.kms.keyCacheMaxAge | quote }}
- name: PERSONA_DATA
  value: /var/lib/persona
- name: PERSONA_METRICS_PORT
  value: {{ .Values.metrics.port | quote }}
{{- end -}}

{{/* The labels of one alert: its severity and prometheus.rules.alertLabels. Takes (dict "root" . "severity" S). */}}
{{- define "onprem.alertLabels" -}}
severity: {{ .severity }}
{{- with .root.Values.prometheus.rules.alertLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}
