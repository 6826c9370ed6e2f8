{{/* Names ------------------------------------------------------------------------ */}}

{{- define "fastship.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name, at most 40 characters so that suffixed names ("-postgresql-app") stay valid. */}}
{{- define "fastship.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Namespace of every namespaced object: set explicitly, so that `helm template | kubectl apply` lands where it was rendered for. */}}
{{- define "fastship.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{- define "fastship.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fastship.configMapName" -}}{{ include "fastship.fullname" . }}-config{{- end -}}
{{- define "fastship.postgresql.fullname" -}}{{ include "fastship.fullname" . }}-postgresql{{- end -}}
{{- define "fastship.operator.fullname" -}}{{ include "fastship.fullname" . }}-operator{{- end -}}

{{- define "fastship.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fastship.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fastship.operator.serviceAccountName" -}}
{{- default (include "fastship.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- end -}}

{{/* Labels --------------------------------------------------------------------------- */}}

{{- define "fastship.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fastship.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Common labels; call with (dict "ctx" $ "component" "server"). */}}
{{- define "fastship.labels" -}}
{{- $ctx := .ctx -}}
helm.sh/chart: {{ include "fastship.chart" $ctx }}
{{ include "fastship.selectorLabels" $ctx }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: fastship
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
metadata.annotations of an object: commonAnnotations plus the object's own (which win).
Call with (dict "ctx" $ "annotations" MAP); returns YAML, empty when there are none.
*/}}
{{- define "fastship.annotations" -}}
{{- $all := merge (dict) (.annotations | default dict) (.ctx.Values.commonAnnotations | default dict) -}}
{{- with $all -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/* Selector of one component's pods; call with (dict "ctx" $ "component" "server"). */}}
{{- define "fastship.componentSelector" -}}
{{ include "fastship.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Image ---------------------------------------------------------------------------- */}}

{{/* Registry of the chart's images: global.imageRegistry (set by an umbrella chart) wins over image.registry. */}}
{{- define "fastship.imageRegistry" -}}
{{- $global := .Values.global | default dict -}}
{{- default .Values.image.registry $global.imageRegistry -}}
{{- end -}}

{{- define "fastship.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- $repository := .Values.image.repository -}}
{{- with include "fastship.imageRegistry" . -}}
{{- $repository = printf "%s/%s" . $repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" $repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "fastship.postgresql.image" -}}
{{- $image := .Values.postgresql.bundled.image -}}
{{- $global := .Values.global | default dict -}}
{{- $registry := default $image.registry $global.imageRegistry -}}
{{- printf "%s%s:%s" (ternary (printf "%s/" $registry) "" (ne $registry "")) $image.repository $image.tag -}}
{{- end -}}

{{/*
Pull secrets of every pod: global.imagePullSecrets then imagePullSecrets, each entry
`{name: x}` or just `x`, without repeats. Returns a JSON list of {name: x} (for a custom
resource's field, e.g. `imagePullSecrets: {{ include "fastship.imagePullSecretRefs" . }}`).
*/}}
{{- define "fastship.imagePullSecretRefs" -}}
{{- $global := .Values.global | default dict -}}
{{- $names := list -}}
{{- range concat ($global.imagePullSecrets | default list) (.Values.imagePullSecrets | default list) -}}
{{- if kindIs "string" . -}}
{{- $names = append $names . -}}
{{- else -}}
{{- $names = append $names (get . "name") -}}
{{- end -}}
{{- end -}}
{{- $refs := list -}}
{{- range $names | compact | uniq -}}
{{- $refs = append $refs (dict "name" .) -}}
{{- end -}}
{{- toJson $refs -}}
{{- end -}}

{{/* The whole `imagePullSecrets:` key of a pod spec; empty when there are none. */}}
{{- define "fastship.imagePullSecrets" -}}
{{- with include "fastship.imagePullSecretRefs" . | fromJsonArray -}}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* Database ------------------------------------------------------------------------- */}}

{{/* Name of the Secret holding the database URL. */}}
{{- define "fastship.postgresql.secretName" -}}
{{- default (include "fastship.postgresql.fullname" .) .Values.postgresql.bundled.existingSecret -}}
{{- end -}}

{{- define "fastship.database.secretName" -}}
{{- $mode := .Values.postgresql.mode -}}
{{- if eq $mode "bundled" -}}
{{- include "fastship.postgresql.secretName" . -}}
{{- else if eq $mode "external" -}}
{{- required "postgresql.external.existingSecret is required when postgresql.mode is external: name a Secret whose key postgresql.external.uriKey holds postgresql://user:password@host:5432/db" .Values.postgresql.external.existingSecret -}}
{{- else -}}
{{- printf "%s-app" (include "fastship.postgresql.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Key of the database URL in that Secret. */}}
{{- define "fastship.database.secretKey" -}}
{{- if eq .Values.postgresql.mode "external" -}}
{{- .Values.postgresql.external.uriKey -}}
{{- else -}}
uri
{{- end -}}
{{- end -}}

{{- define "fastship.env.database" -}}
- name: FASTSHIP_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "fastship.database.secretName" . }}
      key: {{ include "fastship.database.secretKey" . }}
{{- end -}}

{{/* Generated secrets ------------------------------------------------------------------ */}}

{{- define "fastship.jwt.secretName" -}}
{{- default (printf "%s-jwt" (include "fastship.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "fastship.secrets.fullname" -}}{{ include "fastship.fullname" . }}-secrets{{- end -}}

{{/*
The Secrets that the `<fullname>-secrets` Job creates once inside the cluster (see
files/generate-secrets.py): the JWT key unless auth.existingSecret names one, and the
bundled Postgres' password and URL unless postgresql.bundled.existingSecret names one.
The chart never renders their values, so every render is the same. Returns a JSON list,
empty when there is nothing to generate.
*/}}
{{- define "fastship.generatedSecrets" -}}
{{- $list := list -}}
{{- $labels := dict "app.kubernetes.io/name" (include "fastship.name" .) "app.kubernetes.io/part-of" "fastship" "fastship.dev/release" .Release.Name -}}
{{- /* Not the release's: Argo CD must neither prune nor flag them (they are not in the manifests). */ -}}
{{- $annotations := dict "fastship.dev/generated-by" (include "fastship.secrets.fullname" .) "argocd.argoproj.io/compare-options" "IgnoreExtraneous" "argocd.argoproj.io/sync-options" "Prune=false" -}}
{{- if not .Values.auth.existingSecret -}}
{{- $data := dict .Values.auth.secretKey (dict "random" 64) -}}
{{- $list = append $list (dict "name" (include "fastship.jwt.secretName" .) "labels" (merge (dict "app.kubernetes.io/component" "server") $labels) "annotations" $annotations "data" $data) -}}
{{- end -}}
{{- if and (eq .Values.postgresql.mode "bundled") (not .Values.postgresql.bundled.existingSecret) -}}
{{- $db := .Values.postgresql.bundled.database -}}
{{- $uri := printf "postgresql://%s:{password}@%s:5432/%s" $db (include "fastship.postgresql.fullname" .) $db -}}
{{- $data := dict "username" (dict "value" $db) "password" (dict "random" 32) "uri" (dict "format" $uri) -}}
{{- $list = append $list (dict "name" (include "fastship.postgresql.fullname" .) "labels" (merge (dict "app.kubernetes.io/component" "postgresql") $labels) "annotations" $annotations "data" $data) -}}
{{- end -}}
{{- toJson $list -}}
{{- end -}}

{{/* Config --------------------------------------------------------------------------- */}}

{{/*
The `config` map after checks: secret settings and settings the chart sets itself are
refused with a message naming the key. Returns it as YAML.
*/}}
{{- define "fastship.config" -}}
{{- $secret := list "database_url" "database_password" "jwt_secret_key" "redis_url" -}}
{{- $owned := dict "host" "the chart sets FASTSHIP_HOST=0.0.0.0" "port" "the container listens on 8000" "environment" "the chart runs the service with FASTSHIP_ENVIRONMENT=production" "database_host" "the database comes from postgresql.mode (FASTSHIP_DATABASE_URL from a Secret)" "metrics_port" "set metrics.port instead (the chart exposes it on the Service and the NetworkPolicy)" -}}
{{- range $key, $value := .Values.config -}}
{{- if has $key $secret -}}
{{- fail (printf "config.%s is a secret setting: secrets never go into config (it ends up in a ConfigMap or an AppConfig). Use auth.existingSecret for the JWT key, postgresql.* for the database, or extraEnv with valueFrom.secretKeyRef (FASTSHIP_%s) for anything else" $key (upper $key)) -}}
{{- end -}}
{{- if hasKey $owned $key -}}
{{- fail (printf "config.%s cannot be set: %s" $key (get $owned $key)) -}}
{{- end -}}
{{- end -}}
{{- toYaml .Values.config -}}
{{- end -}}

{{/* The config map in environment form: {FASTSHIP_LOG_LEVEL: "INFO"}. */}}
{{- define "fastship.configEnv" -}}
{{- $config := include "fastship.config" . | fromYaml -}}
{{- range $key, $value := $config }}
{{ printf "FASTSHIP_%s" (upper $key) }}: {{ $value | quote }}
{{- end -}}
{{- end -}}

{{/* Checks across values ------------------------------------------------------------- */}}

{{- define "fastship.validate" -}}
{{- if and (eq .Values.migrations.mode "operator") (not .Values.operator.enabled) -}}
{{- fail "migrations.mode is operator but operator.enabled is false: enable the operator, or set migrations.mode: hook (a Helm hook Job runs the migrations)" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail (printf "autoscaling.minReplicas (%d) is greater than autoscaling.maxReplicas (%d)" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- if and .Values.httpRoute.enabled (not .Values.httpRoute.parentRefs) -}}
{{- fail "httpRoute.parentRefs is empty: name the Gateway the HTTPRoute attaches to, e.g. [{name: my-gateway, namespace: infra}]" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (eq (int .Values.metrics.port) 0) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.port: the ServiceMonitor scrapes the Service's metrics port (with metrics.port 0, /metrics is on the API port, which the Ingress and HTTPRoute publish)" -}}
{{- end -}}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) -}}
{{- fail "serviceAccount.name is required when serviceAccount.create is false" -}}
{{- end -}}
{{- range $key, $value := .Values.migrations.jobAnnotations -}}
{{- if hasPrefix "helm.sh/hook" $key -}}
{{- fail (printf "migrations.jobAnnotations.%s: the chart sets Helm's hook annotations itself. Choose how the migration Job runs with migrations.mode: hook (a Helm hook) or job (an ordinary Job of the release, for Flux and helm --wait)" $key) -}}
{{- end -}}
{{- if and (eq $key "argocd.argoproj.io/hook") (contains "PreSync" $value) (ne $.Values.postgresql.mode "external") -}}
{{- fail (printf "migrations.jobAnnotations.argocd.argoproj.io/hook: %s runs the migration Job before this release's database (postgresql.mode %s) exists, so the first sync cannot succeed. Leave the annotation out (the chart runs the Job in Argo CD's Sync phase, next to the database), or use postgresql.mode external" $value $.Values.postgresql.mode) -}}
{{- end -}}
{{- end -}}
{{- $_ := include "fastship.config" . -}}
{{- $_ := include "fastship.database.secretName" . -}}
{{- end -}}

{{/* Pod parts ------------------------------------------------------------------------- */}}

{{/* The wait-for-schema init container. */}}
{{- define "fastship.waitForSchemaContainer" -}}
- name: wait-for-schema
  image: {{ include "fastship.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["python", "-m", "app", "wait-for-schema", "--timeout", {{ .Values.migrations.waitForSchemaTimeoutSeconds | int | toString | quote }}]
  env:
    {{- include "fastship.env.database" . | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml .Values.migrations.resources | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end -}}


{{/* Pod template of the migration Job (modes hook and job); its hash names the Job in mode job. */}}
{{- define "fastship.migrationPodTemplate" -}}
template:
  metadata:
    labels:
      {{- include "fastship.labels" (dict "ctx" $ "component" "migration") | nindent 6 }}
  spec:
    restartPolicy: Never
    serviceAccountName: {{ include "fastship.serviceAccountName" . }}
    automountServiceAccountToken: false
    enableServiceLinks: false
    {{- with include "fastship.imagePullSecrets" . }}
    {{- . | nindent 4 }}
    {{- end }}
    securityContext:
      {{- toYaml .Values.podSecurityContext | nindent 6 }}
    initContainers:
      # Holds the Job (instead of failing it) while the database starts: under Argo CD and
      # in mode `job` the Job starts together with a database the release creates.
      - name: wait-for-database
        image: {{ include "fastship.image" . }}
        imagePullPolicy: {{ .Values.image.pullPolicy }}
        args:
          - python
          - -c
          - |
            import os, re, time, psycopg
            url = re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", os.environ["FASTSHIP_DATABASE_URL"])
            while True:
                try:
                    psycopg.connect(url, connect_timeout=5).close()
                    break
                except psycopg.OperationalError as exc:
                    print("waiting for the database:", str(exc).splitlines()[0][:200], flush=True)
                    time.sleep(2)
        env:
          {{- include "fastship.env.database" . | nindent 10 }}
        securityContext:
          {{- toYaml .Values.securityContext | nindent 10 }}
        resources:
          {{- toYaml .Values.migrations.resources | nindent 10 }}
        volumeMounts:
          - name: tmp
            mountPath: /tmp
    containers:
      - name: migrate
        image: {{ include "fastship.image" . }}
        imagePullPolicy: {{ .Values.image.pullPolicy }}
        args:
          {{- if .Values.migrations.command }}
          {{- toYaml .Values.migrations.command | nindent 10 }}
          {{- else }}
          ["python", "-m", "app", "migrate"]
          {{- end }}
        env:
          {{- include "fastship.env.database" . | nindent 10 }}
        securityContext:
          {{- toYaml .Values.securityContext | nindent 10 }}
        resources:
          {{- toYaml .Values.migrations.resources | nindent 10 }}
        volumeMounts:
          - name: tmp
            mountPath: /tmp
    volumes:
      - name: tmp
        emptyDir: {}
    {{- with .Values.nodeSelector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end -}}

{{/* Pod template of the `<fullname>-secrets` Job; its hash names the Job. */}}
{{- define "fastship.secretsPodTemplate" -}}
template:
  metadata:
    labels:
      {{- include "fastship.labels" (dict "ctx" $ "component" "secrets") | nindent 6 }}
  spec:
    restartPolicy: Never
    serviceAccountName: {{ include "fastship.secrets.fullname" . }}
    # The one pod of the release that needs an API token: it creates the Secrets.
    automountServiceAccountToken: true
    enableServiceLinks: false
    {{- with include "fastship.imagePullSecrets" . }}
    {{- . | nindent 4 }}
    {{- end }}
    securityContext:
      {{- toYaml .Values.podSecurityContext | nindent 6 }}
    containers:
      - name: generate
        image: {{ include "fastship.image" . }}
        imagePullPolicy: {{ .Values.image.pullPolicy }}
        args: ["python", "/scripts/generate-secrets.py"]
        env:
          - name: FASTSHIP_SECRETS
            value: {{ include "fastship.generatedSecrets" . | quote }}
        securityContext:
          {{- toYaml .Values.securityContext | nindent 10 }}
        resources:
          {{- toYaml .Values.migrations.resources | nindent 10 }}
        volumeMounts:
          - name: scripts
            mountPath: /scripts
            readOnly: true
          - name: tmp
            mountPath: /tmp
    volumes:
      - name: scripts
        configMap:
          name: {{ include "fastship.secrets.fullname" . }}
      - name: tmp
        emptyDir:
          sizeLimit: 16Mi
    {{- /*
    Any node will do for this small pod, also while the service's own nodeSelector matches
    no node (a hook that cannot be scheduled would hold every upgrade); it tolerates what
    the service tolerates, to be allowed onto tainted node pools.
    */}}
    {{- with .Values.tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end -}}
