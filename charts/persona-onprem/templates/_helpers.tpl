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

{{/* Where each service keeps its state (PERSONA_DATA): its volume. */}}
{{- define "onprem.dataDir" -}}
/var/lib/persona
{{- end -}}

{{/* Where each service's mutual-TLS files are mounted (PERSONA_TLS_DIR). */}}
{{- define "onprem.tlsDir" -}}
/etc/persona/tls
{{- end -}}

{{/* Environment shared by the gateway and the de-tokenizer: the bus, the KMS, the
data directory, the consumer name, mutual TLS and metrics; each variable is a flag's
(`persona gateway --help`). */}}
{{- define "onprem.commonEnv" -}}
- name: PERSONA_REDIS_URL
  value: {{ .Values.bus.redis | quote }}
{{- if .Values.bus.passwordSecret.name }}
- name: PERSONA_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.bus.passwordSecret.name | quote }}
      key: {{ .Values.bus.passwordSecret.key | quote }}
{{- end }}
- name: PERSONA_REDIS_PREFIX
  value: {{ .Values.bus.prefix | quote }}
- name: PERSONA_PARTITIONS
  value: {{ .Values.bus.partitions | int64 | quote }}
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
{{- with .Values.kms.keyCacheMaxUses }}
- name: PERSONA_KEY_CACHE_MAX_USES
  value: {{ . | int64 | quote }}
{{- end }}
- name: PERSONA_DATA
  value: {{ include "onprem.dataDir" . | quote }}
# The pod's stable name: this process's consumer name in the streams' groups.
- name: PERSONA_CONSUMER
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: PERSONA_TLS_DIR
  value: {{ include "onprem.tlsDir" . | quote }}
- name: PERSONA_METRICS_ADDR
  value: {{ printf "0.0.0.0:%d" (.Values.metrics.port | int) | quote }}
{{- end -}}

{{/* The read-only volume of a service's mutual-TLS files, named as the command
expects them: ca.pem, NAME.pem, NAME.key. Takes (dict "tls" TLS_VALUES "name" NAME). */}}
{{- define "onprem.tlsVolume" -}}
- name: tls
  secret:
    secretName: {{ required (printf "%s.tls.secretName: the Secret with the %s's mutual-TLS certificate" .name .name) .tls.secretName | quote }}
    # 0440: readable by the pod's group (fsGroup) only.
    defaultMode: 288
    items:
      - key: {{ .tls.keys.ca | quote }}
        path: ca.pem
      - key: {{ .tls.keys.cert | quote }}
        path: {{ printf "%s.pem" .name }}
      - key: {{ .tls.keys.key | quote }}
        path: {{ printf "%s.key" .name }}
{{- end -}}

{{/* The gateway's SealedVault address the de-tokenizer calls (PERSONA_VAULT_ADDR). */}}
{{- define "onprem.vaultAddress" -}}
{{- if .Values.detokenizer.vaultAddress -}}
{{- .Values.detokenizer.vaultAddress -}}
{{- else if .Values.gateway.enabled -}}
{{- printf "https://%s.%s.svc:%d" (include "onprem.name" (dict "root" . "component" "gateway")) .Release.Namespace (.Values.gateway.port | int) -}}
{{- else -}}
{{- fail "detokenizer.vaultAddress: the gateway is not in this release (gateway.enabled=false), so say where it is (https://HOST:PORT)" -}}
{{- end -}}
{{- end -}}

{{/* The de-tokenizer's channel sinks, CHANNEL=URL comma-separated (PERSONA_CHANNELS). */}}
{{- define "onprem.channels" -}}
{{- $c := .Values.detokenizer.channels }}
{{- $s := $c.smtp }}
{{- $sinks := list }}
{{- range $channel := list "push" "email" "sms" }}
{{- $ch := index $c $channel }}
{{- if eq $ch.sink "webhook" }}
{{- $sinks = append $sinks (printf "%s=%s" $channel $ch.url) }}
{{- else if eq $ch.sink "smtp" }}
{{- if not (and $s.host $s.from) }}
{{- fail (printf "detokenizer.channels.%s.sink is smtp: set detokenizer.channels.smtp.host and .from" $channel) }}
{{- end }}
{{- $scheme := get (dict "starttls" "smtp+starttls" "tls" "smtps" "none" "smtp") $s.security }}
{{- $sinks = append $sinks (printf "%s=%s://%s:%d?from=%s" $channel $scheme $s.host ($s.port | int) $s.from) }}
{{- else }}
{{- $sinks = append $sinks (printf "%s=file:%s/deliveries.jsonl" $channel (include "onprem.dataDir" $)) }}
{{- end }}
{{- end }}
{{- join "," $sinks }}
{{- end -}}

{{/* The ports the de-tokenizer's channel sinks are reached on, one per line. */}}
{{- define "onprem.channelPorts" -}}
{{- $c := .Values.detokenizer.channels }}
{{- $ports := list }}
{{- range $channel := list "push" "email" "sms" }}
{{- $ch := index $c $channel }}
{{- if eq $ch.sink "webhook" }}
{{- $port := regexFind "[0-9]+$" (regexFind ":[0-9]+$" (urlParse $ch.url).host) | default "443" }}
{{- $ports = append $ports ($port | int) }}
{{- else if eq $ch.sink "smtp" }}
{{- $ports = append $ports ($c.smtp.port | int) }}
{{- end }}
{{- end }}
{{- range $ports | uniq }}
{{ . }}
{{- end }}
{{- end -}}

{{/* The labels of one alert: its severity and prometheus.rules.alertLabels. Takes (dict "root" . "severity" S). */}}
{{- define "onprem.alertLabels" -}}
severity: {{ .severity }}
{{- with .root.Values.prometheus.rules.alertLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}
