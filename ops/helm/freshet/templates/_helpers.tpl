{{/* Names, labels and the settings both workers share. */}}

{{- define "freshet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "freshet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "freshet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "freshet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one worker: include "freshet.selectorLabels" (dict "root" $ "role" "indexer") */}}
{{- define "freshet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "freshet.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "freshet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "freshet.weaviateHost" -}}
{{- if .Values.weaviate.host -}}
{{- .Values.weaviate.host -}}
{{- else if .Values.weaviate.bridgeService.enabled -}}
{{- printf "%s-weaviate" (include "freshet.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- fail "weaviate.host is required when weaviate.bridgeService.enabled is false" -}}
{{- end -}}
{{- end -}}

{{/* The Secret the workers read FRESHET_* variables from, or "" when there is none. */}}
{{- define "freshet.secretName" -}}
{{- if .Values.existingSecret -}}
{{- .Values.existingSecret -}}
{{- else if .Values.secrets -}}
{{- include "freshet.fullname" . -}}
{{- end -}}
{{- end -}}

{{- define "freshet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "freshet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Where Faust keeps its data directory (FRESHET_HOME); a volume is mounted there. */}}
{{- define "freshet.home" -}}/var/lib/freshet{{- end -}}

{{/*
The settings the chart sets itself, as a dict of FRESHET_* name -> string. `settings` and `secrets`
may not name them again (the chart fails and names the value to use instead), so the probes, ports
and volumes always match what the workers are told.
*/}}
{{- define "freshet.managedSettings" -}}
FRESHET_KAFKA_BOOTSTRAP: {{ required "kafka.bootstrapServers is required (host:port[,host:port])" .Values.kafka.bootstrapServers | quote }}
FRESHET_TOPIC_PARTITIONS: {{ .Values.kafka.topicPartitions | toString | quote }}
FRESHET_TOPIC_REPLICATION: {{ .Values.kafka.topicReplication | toString | quote }}
FRESHET_WEAVIATE_HOST: {{ include "freshet.weaviateHost" . | quote }}
FRESHET_WEAVIATE_HTTP_PORT: {{ .Values.weaviate.httpPort | toString | quote }}
FRESHET_WEAVIATE_GRPC_PORT: {{ .Values.weaviate.grpcPort | toString | quote }}
FRESHET_WEB_BIND: "0.0.0.0"
FRESHET_INDEXER_WEB_PORT: {{ .Values.web.indexerPort | toString | quote }}
FRESHET_QUERY_WEB_PORT: {{ .Values.web.queryPort | toString | quote }}
FRESHET_HOME: {{ include "freshet.home" . | quote }}
FRESHET_LOG_LEVEL: {{ .Values.logLevel | quote }}
{{- end -}}

{{/* Fails when `settings` or `secrets` holds a name that is not FRESHET_* or that the chart sets. */}}
{{- define "freshet.checkSettings" -}}
{{- $managed := include "freshet.managedSettings" . | fromYaml -}}
{{- range $source, $map := dict "settings" .Values.settings "secrets" .Values.secrets -}}
{{- range $key, $_ := $map -}}
{{- if not (hasPrefix "FRESHET_" $key) -}}
{{- fail (printf "%s.%s: only FRESHET_* settings go here (docs/configuration.md); use <worker>.extraEnv for other variables" $source $key) -}}
{{- end -}}
{{- if hasKey $managed $key -}}
{{- fail (printf "%s.%s is set by the chart from its own values (kafka.*, weaviate.*, web.*, logLevel); set it there" $source $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
