{{/* Labels every object of a component carries. Call with (dict "root" $ "component" "signaling"). */}}
{{- define "tandem.labels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: tandem
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}

{{/* The labels that select a component's pods. */}}
{{- define "tandem.selector" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{/* A component's image: its override (skaffold sets those), else <registry>/<component>:<tag or appVersion>. */}}
{{- define "tandem.image" -}}
{{- $tag := .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- $override := index (.root.Values.image.overrides | default dict) .component -}}
{{ $override | default (printf "%s/%s:%s" .root.Values.image.registry .component $tag) }}
{{- end }}

{{/* The port of /healthz, /readyz, /metrics (and the service's own routes). */}}
{{- define "tandem.httpPort" -}}8080{{- end }}

{{/* Environment every service reads (TANDEM_<PREFIX>_*). Call with (dict "root" $ "prefix" "SIGNALING"). */}}
{{- define "tandem.commonEnv" -}}
{{- $p := printf "TANDEM_%s_" .prefix -}}
{{- $v := .root.Values -}}
- name: {{ $p }}NATS_URL
  value: {{ $v.nats.url | quote }}
- name: {{ $p }}REGION
  value: {{ $v.region | quote }}
- name: {{ $p }}INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: {{ $p }}HTTP_HOST
  value: "0.0.0.0"
- name: {{ $p }}HTTP_PORT
  value: {{ include "tandem.httpPort" . | quote }}
- name: {{ $p }}LOG_FORMAT
  value: json
- name: {{ $p }}LOG_LEVEL
  value: {{ $v.telemetry.logLevel | quote }}
{{- with $v.telemetry.otlpEndpoint }}
- name: {{ $p }}OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: {{ $p }}REQUEST_TIMEOUT_S
  value: {{ $v.common.requestTimeoutSeconds | quote }}
- name: {{ $p }}MAX_PAYLOAD_BYTES
  value: {{ $v.common.maxPayloadBytes | int64 | quote }}
{{- end }}

{{/* A component's free-form settings map as TANDEM_<PREFIX>_<NAME> variables (YAML numbers arrive as
float64: whole ones are printed as integers, never as 1e+07). */}}
{{- define "tandem.settingsEnv" -}}
{{- $p := printf "TANDEM_%s_" .prefix -}}
{{- range $name, $value := .settings }}
- name: {{ printf "%s%s" $p (upper $name) }}
  {{- if and (kindIs "float64" $value) (eq (float64 (int64 $value)) $value) }}
  value: {{ int64 $value | quote }}
  {{- else }}
  value: {{ $value | toString | quote }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Liveness on /healthz, readiness on /readyz (NATS connected, started, not draining). */}}
{{- define "tandem.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 10
  failureThreshold: 6
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  failureThreshold: 2
{{- end }}

{{- define "tandem.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "tandem.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* The pod's imagePullSecrets, when image.pullSecrets names any. Call with the root context. */}}
{{- define "tandem.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Prometheus discovers /metrics from these pod annotations. */}}
{{- define "tandem.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ include "tandem.httpPort" . | quote }}
prometheus.io/path: /metrics
{{- end }}

{{/*
One stateless service: ServiceAccount, Deployment, PodDisruptionBudget. Call with
(dict "root" $ "component" "matchmaking" "prefix" "MATCHMAKING" "values" .Values.matchmaking
      "env" <extra env YAML or "">).
*/}}
{{- define "tandem.service" -}}
{{- $ctx := dict "root" .root "component" .component -}}
{{- $drain := int .root.Values.common.drainTimeoutSeconds -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .component }}
  labels:
    {{- include "tandem.labels" $ctx | nindent 4 }}
automountServiceAccountToken: false
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .component }}
  labels:
    {{- include "tandem.labels" $ctx | nindent 4 }}
spec:
  {{- if not (.values.autoscaling | default dict).enabled }}
  replicas: {{ .values.replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "tandem.selector" $ctx | nindent 6 }}
  strategy:
    type: RollingUpdate
    # a replacement is ready before an instance drains
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels:
        {{- include "tandem.labels" $ctx | nindent 8 }}
      annotations:
        {{- include "tandem.scrapeAnnotations" . | nindent 8 }}
    spec:
      serviceAccountName: {{ .component }}
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: {{ add $drain 15 }}
      securityContext:
        {{- include "tandem.podSecurityContext" . | nindent 8 }}
      {{- include "tandem.imagePullSecrets" .root | nindent 6 }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "tandem.selector" $ctx | nindent 14 }}
      containers:
        - name: {{ .component }}
          image: {{ include "tandem.image" $ctx }}
          imagePullPolicy: {{ .root.Values.image.pullPolicy }}
          env:
            {{- include "tandem.commonEnv" (dict "root" .root "prefix" .prefix) | nindent 12 }}
            - name: {{ printf "TANDEM_%s_DRAIN_TIMEOUT_S" .prefix }}
              value: {{ $drain | quote }}
            {{- with .env }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with .values.settings }}
            {{- include "tandem.settingsEnv" (dict "prefix" $.prefix "settings" .) | trim | nindent 12 }}
            {{- end }}
          ports:
            - name: http
              containerPort: {{ include "tandem.httpPort" . }}
          {{- include "tandem.probes" . | nindent 10 }}
          resources:
            {{- toYaml .values.resources | nindent 12 }}
          securityContext:
            {{- include "tandem.containerSecurityContext" . | nindent 12 }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .component }}
  labels:
    {{- include "tandem.labels" $ctx | nindent 4 }}
spec:
  maxUnavailable: {{ .values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "tandem.selector" $ctx | nindent 6 }}
{{- with .values.autoscaling }}
{{- if .enabled }}
---
# CPU-based scaling between minReplicas and maxReplicas (replicas is then left to it).
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $.component }}
  labels:
    {{- include "tandem.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $.component }}
  minReplicas: {{ .minReplicas }}
  maxReplicas: {{ .maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .targetCPUUtilizationPercentage }}
  behavior:
    scaleDown:
      # connections and matches drain slowly; do not flap
      stabilizationWindowSeconds: 300
{{- end }}
{{- end }}
{{- end }}
