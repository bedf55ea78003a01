{{/*
One worker's Deployment: include "freshet.deployment" (dict "root" $ "role" "indexer" "port" 6066).
Both workers run the same image; the role is the argument of `freshet worker`.
*/}}
{{- define "freshet.deployment" -}}
{{- $root := .root -}}
{{- $role := .role -}}
{{- $w := index $root.Values $role -}}
{{- $secret := include "freshet.secretName" $root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "freshet.fullname" $root }}-{{ $role }}
  labels:
    {{- include "freshet.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $role }}
spec:
  replicas: {{ $w.replicas }}
  selector:
    matchLabels:
      {{- include "freshet.selectorLabels" (dict "root" $root "role" $role) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "freshet.selectorLabels" (dict "root" $root "role" $role) | nindent 8 }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        prometheus.io/port: {{ .port | toString | quote }}
        # Roll the pods when the settings change (env from a ConfigMap is read at start only).
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
    spec:
      serviceAccountName: {{ include "freshet.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
      containers:
        - name: {{ $role }}
          image: {{ include "freshet.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: ["worker", {{ $role | quote }}]
          ports:
            - name: http
              containerPort: {{ .port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "freshet.fullname" $root }}
            {{- if $secret }}
            - secretRef:
                name: {{ $secret }}
            {{- end }}
          env:
            # The model ships in the image; never reach for a hub at run time.
            - name: HF_HUB_OFFLINE
              value: "1"
            - name: TRANSFORMERS_OFFLINE
              value: "1"
            # The root filesystem is read-only: caches (torch, tokenizers) go under /tmp.
            - name: HOME
              value: /tmp
            {{- with $w.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          startupProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: {{ $root.Values.probes.startup.periodSeconds }}
            failureThreshold: {{ $root.Values.probes.startup.failureThreshold }}
          readinessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: {{ $root.Values.probes.readiness.periodSeconds }}
            timeoutSeconds: {{ $root.Values.probes.readiness.timeoutSeconds }}
            failureThreshold: {{ $root.Values.probes.readiness.failureThreshold }}
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: {{ $root.Values.probes.liveness.periodSeconds }}
            timeoutSeconds: {{ $root.Values.probes.liveness.timeoutSeconds }}
            failureThreshold: {{ $root.Values.probes.liveness.failureThreshold }}
          resources:
            {{- toYaml $w.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: data
              mountPath: {{ include "freshet.home" $root }}
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: data
          emptyDir:
            {{- with $w.dataVolume.sizeLimit }}
            sizeLimit: {{ . }}
            {{- end }}
        - name: tmp
          emptyDir:
            {{- with $root.Values.tmpVolume.sizeLimit }}
            sizeLimit: {{ . }}
            {{- end }}
      {{- with $w.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $w.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $w.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{/* One worker's PodDisruptionBudget: include "freshet.pdb" (dict "root" $ "role" "indexer"). */}}
{{- define "freshet.pdb" -}}
{{- $w := index .root.Values .role -}}
{{- if $w.pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "freshet.fullname" .root }}-{{ .role }}
  labels:
    {{- include "freshet.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .role }}
spec:
  maxUnavailable: {{ $w.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "freshet.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* One worker's metrics Service: include "freshet.metricsService" (dict "root" $ "role" "query" "port" 6067). */}}
{{- define "freshet.metricsService" -}}
{{- if .root.Values.metricsService.enabled }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "freshet.fullname" .root }}-{{ .role }}
  labels:
    {{- include "freshet.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .role }}
  {{- with .root.Values.metricsService.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: ClusterIP
  selector:
    {{- include "freshet.selectorLabels" (dict "root" .root "role" .role) | nindent 4 }}
  ports:
    - name: http
      port: {{ .port }}
      targetPort: http
      protocol: TCP
{{- end }}
{{- end -}}
