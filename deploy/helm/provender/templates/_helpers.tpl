{{/* Names, labels and the pieces every component's pod shares. */}}

{{- define "provender.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "provender.fullname" -}}
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

{{/* A component's resource name: <fullname>-<component>, at most 63 characters. */}}
{{- define "provender.componentName" -}}
{{- printf "%s-%s" (include "provender.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "provender.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "provender.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: {root, component}. */}}
{{- define "provender.selectorLabels" -}}
app.kubernetes.io/name: {{ include "provender.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "provender.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "provender.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "provender.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The registry URL the components use: the core service when it is enabled, else registry.url. */}}
{{- define "provender.registryUrl" -}}
{{- if .Values.core.enabled -}}
{{- printf "http://%s:%d" (include "provender.componentName" (dict "root" . "component" "core")) (int .Values.core.port) -}}
{{- else -}}
{{- .Values.registry.url -}}
{{- end -}}
{{- end -}}

{{/* provender.yaml: the settings rendered from values, with .Values.config merged over them. */}}
{{- define "provender.config" -}}
{{- $online := dict "store" "redis" "url" .Values.redis.url "cluster" .Values.redis.cluster -}}
{{- $consumer := deepCopy .Values.kafka.options -}}
{{- if .Values.kafka.bootstrapServers -}}
{{- $_ := set $consumer "bootstrap.servers" .Values.kafka.bootstrapServers -}}
{{- end -}}
{{- $auth := dict "mode" .Values.serving.auth.mode -}}
{{- $serving := dict "host" "0.0.0.0" "http_port" (int .Values.serving.httpPort) "grpc_port" (int .Values.serving.grpcPort) "workers" (int .Values.serving.workers) "auth" $auth -}}
{{- $s3 := dict "credential_chain" (not .Values.storage.s3.existingSecret) -}}
{{- with .Values.storage.s3.endpointUrl }}{{- $_ := set $s3 "endpoint_url" . -}}{{- end -}}
{{- with .Values.storage.s3.region }}{{- $_ := set $s3 "region" . -}}{{- end -}}
{{- $gcs := dict "anonymous" .Values.storage.gcs.anonymous -}}
{{- with .Values.storage.gcs.endpointUrl }}{{- $_ := set $gcs "endpoint_url" . -}}{{- end -}}
{{- with .Values.storage.gcs.projectId }}{{- $_ := set $gcs "project_id" . -}}{{- end -}}
{{- $settings := dict "project" .Values.project "registry" (include "provender.registryUrl" .) "offline" (deepCopy .Values.offline) "online" $online "serving" $serving "stream" (dict "consumer_options" $consumer) "storage" (dict "s3" $s3 "gcs" $gcs) -}}
{{- toYaml (mustMergeOverwrite $settings (deepCopy .Values.config)) -}}
{{- end -}}

{{/* Environment of every container: secrets as settings, then extraEnv. */}}
{{- define "provender.env" -}}
- name: PROVENDER_CONFIG
  value: /etc/provender/provender.yaml
- name: HOME
  value: /tmp
{{- if .Values.registry.existingSecret }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.registry.existingSecret }}
      key: {{ .Values.registry.passwordKey }}
{{- end }}
{{- if .Values.redis.existingSecret }}
- name: PROVENDER_ONLINE__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.passwordKey }}
{{- end }}
{{- with .Values.storage.s3 }}
{{- if .existingSecret }}
- name: PROVENDER_STORAGE__S3__ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .accessKeyIdKey }}
- name: PROVENDER_STORAGE__S3__SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .secretAccessKeyKey }}
{{- if .sessionTokenKey }}
- name: PROVENDER_STORAGE__S3__SESSION_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .sessionTokenKey }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.kafka.existingSecret }}
- name: PROVENDER_STREAM__CONSUMER_OPTIONS__SASL.PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.existingSecret }}
      key: {{ .Values.kafka.passwordKey }}
{{- end }}
{{- if ne .Values.serving.auth.mode "none" }}
- name: {{ ternary "PROVENDER_SERVING__AUTH__TOKENS" "PROVENDER_SERVING__AUTH__JWT_SECRET" (eq .Values.serving.auth.mode "token") }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.serving.auth.existingSecret }}
      key: {{ .Values.serving.auth.secretKey }}
{{- end }}
{{- if and .Values.core.enabled (ne .Values.core.auth.mode "none") }}
- name: PROVENDER_CORE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.core.auth.clientTokenSecret }}
      key: {{ .Values.core.auth.clientTokenKey }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The parts of a pod spec every component shares (under `spec:` of a pod template): {root, hook}.
A hook (the migration Job) runs before the release's ServiceAccount and ConfigMap exist: it uses its own
ConfigMap and the namespace's default ServiceAccount unless an existing one is named. */}}
{{- define "provender.podCommon" -}}
{{- $root := .root -}}
automountServiceAccountToken: false
{{- if or (not .hook) (not $root.Values.serviceAccount.create) }}
serviceAccountName: {{ include "provender.serviceAccountName" $root }}
{{- end }}
# The product ignores the <SERVICE>_SERVICE_HOST variables Kubernetes would inject; no need for them.
enableServiceLinks: false
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.hostAliases }}
hostAliases:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "provender.fullname" $root }}-{{ ternary "migration-config" "config" (.hook | default false) }}
  - name: tmp
    emptyDir: {}
  {{- with $root.Values.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* The parts of a container every component shares: {root, env (more EnvVars, optional)}. */}}
{{- define "provender.containerCommon" -}}
{{- $root := .root -}}
image: {{ include "provender.image" $root }}
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
env:
  {{- include "provender.env" $root | nindent 2 }}
  {{- with .env }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
securityContext:
  {{- toYaml $root.Values.securityContext | nindent 2 }}
volumeMounts:
  - name: config
    mountPath: /etc/provender
    readOnly: true
  - name: tmp
    mountPath: /tmp
  {{- with $root.Values.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* The env entry pointing a component straight at the registry database (core, migration). */}}
{{- define "provender.registryDirectEnv" -}}
- name: PROVENDER_REGISTRY
  value: {{ .Values.registry.url | quote }}
{{- end -}}

{{/* The core service's own environment: the registry database, and who may do what (core.auth). */}}
{{- define "provender.coreEnv" -}}
{{ include "provender.registryDirectEnv" . }}
{{- if ne .Values.core.auth.mode "none" }}
# Only the core pod: every process validates the core: section, and the others have no secret for it.
- name: PROVENDER_CORE__AUTH__MODE
  value: {{ .Values.core.auth.mode }}
- name: {{ ternary "PROVENDER_CORE__AUTH__TOKENS" "PROVENDER_CORE__AUTH__JWT_SECRET" (eq .Values.core.auth.mode "token") }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.core.auth.existingSecret }}
      key: {{ .Values.core.auth.secretKey }}
{{- end }}
{{- end -}}

{{/* Pod template metadata: labels, config checksum (restarts pods on a config change), scrape annotations. */}}
{{- define "provender.podMetadata" -}}
labels:
  {{- include "provender.selectorLabels" (dict "root" .root "component" .component) | nindent 2 }}
  {{- with .root.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  # (63 characters: podman kube play refuses longer annotation values, Kubernetes does not care)
  checksum/config: {{ include "provender.config" .root | sha256sum | trunc 63 }}
  {{- if and .root.Values.metrics.annotations .metricsPort }}
  prometheus.io/scrape: "true"
  prometheus.io/port: {{ .metricsPort | quote }}
  prometheus.io/path: /metrics
  {{- end }}
  {{- with .root.Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}
