{{- define "crm-scorer.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "crm-scorer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component (scorer or monitor): pass (dict "root" $ "component" "scorer"). */}}
{{- define "crm-scorer.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "crm-scorer.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/*
The connection every process reads (consumer/connection.py), as environment variables under a settings prefix
(CRM_SCORER_ or CRM_MONITOR_): pass (dict "root" $ "prefix" "CRM_SCORER_").
*/}}
{{- define "crm-scorer.connectionEnv" -}}
{{- $v := .root.Values -}}
- name: {{ .prefix }}KAFKA__BOOTSTRAP_SERVERS
  value: {{ $v.kafka.bootstrapServers | quote }}
{{- if ne $v.kafka.securityProtocol "PLAINTEXT" }}
- name: {{ .prefix }}KAFKA__SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
{{- end }}
{{- with $v.kafka.saslMechanism }}
- name: {{ $.prefix }}KAFKA__SASL_MECHANISM
  value: {{ . | quote }}
- name: {{ $.prefix }}KAFKA__SASL_USERNAME
  value: {{ required "kafka.saslUsername goes with kafka.saslMechanism" $v.kafka.saslUsername | quote }}
- name: {{ $.prefix }}KAFKA__SASL_PASSWORD_FILE
  value: {{ printf "/etc/crm-scorer/kafka/%s" $v.kafka.passwordSecret.key | quote }}
{{- end }}
{{- with $v.kafka.tlsSecret.name }}
- name: {{ $.prefix }}KAFKA__SSL_CA_LOCATION
  value: {{ printf "/etc/crm-scorer/kafka-tls/%s" $v.kafka.tlsSecret.caKey | quote }}
{{- if $v.kafka.tlsSecret.certKey }}
- name: {{ $.prefix }}KAFKA__SSL_CERTIFICATE_LOCATION
  value: {{ printf "/etc/crm-scorer/kafka-tls/%s" $v.kafka.tlsSecret.certKey | quote }}
- name: {{ $.prefix }}KAFKA__SSL_KEY_LOCATION
  value: {{ printf "/etc/crm-scorer/kafka-tls/%s" (required "kafka.tlsSecret.keyKey goes with certKey" $v.kafka.tlsSecret.keyKey) | quote }}
{{- end }}
{{- end }}
{{- with $v.schemaRegistry.url }}
- name: {{ $.prefix }}SCHEMA_REGISTRY__URL
  value: {{ . | quote }}
{{- end }}
{{- with $v.schemaRegistry.userInfoSecret.name }}
- name: {{ $.prefix }}SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $v.schemaRegistry.userInfoSecret.key }}
{{- end }}
{{- end -}}

{{/* The Secrets the connection reads as files: volumes, then their mounts. */}}
{{- define "crm-scorer.secretVolumes" -}}
{{- with .Values.kafka.saslMechanism }}
- name: kafka-password
  secret:
    secretName: {{ required "kafka.passwordSecret.name goes with kafka.saslMechanism" $.Values.kafka.passwordSecret.name }}
    defaultMode: 0440
{{- end }}
{{- with .Values.kafka.tlsSecret.name }}
- name: kafka-tls
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "crm-scorer.secretMounts" -}}
{{- if .Values.kafka.saslMechanism }}
- name: kafka-password
  mountPath: /etc/crm-scorer/kafka
  readOnly: true
{{- end }}
{{- if .Values.kafka.tlsSecret.name }}
- name: kafka-tls
  mountPath: /etc/crm-scorer/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}
