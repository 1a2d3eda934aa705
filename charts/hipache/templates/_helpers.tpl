{{/* Names. */}}
{{- define "hipache.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hipache.fullname" -}}
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

{{- define "hipache.syncerName" -}}
{{- printf "%s-syncer" (include "hipache.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hipache.redisName" -}}
{{- printf "%s-redis" (include "hipache.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hipache.proxyServiceAccount" -}}
{{- if .Values.proxy.serviceAccount.create -}}
{{- default (include "hipache.fullname" .) .Values.proxy.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.proxy.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "hipache.syncerServiceAccount" -}}
{{- if .Values.syncer.serviceAccount.create -}}
{{- default (include "hipache.syncerName" .) .Values.syncer.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.syncer.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels: common ones, then per component (proxy, syncer, redis). */}}
{{- define "hipache.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "hipache.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hipache
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "hipache.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hipache.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "hipache.componentLabels" -}}
{{ include "hipache.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "hipache.proxyImage" -}}
{{- printf "%s:%s" .Values.proxy.image.repository (default .Chart.AppVersion .Values.proxy.image.tag) -}}
{{- end -}}

{{- define "hipache.syncerImage" -}}
{{- printf "%s:%s" .Values.syncer.image.repository (default .Chart.AppVersion .Values.syncer.image.tag) -}}
{{- end -}}

{{/* The Secret and key holding the Redis password; empty name: none. */}}
{{- define "hipache.redisSecretName" -}}
{{- if eq .Values.redis.mode "external" -}}
{{- .Values.redis.external.existingSecret -}}
{{- else if .Values.redis.auth.enabled -}}
{{- default (include "hipache.redisName" .) .Values.redis.auth.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "hipache.redisSecretKey" -}}
{{- if eq .Values.redis.mode "external" -}}
{{- .Values.redis.external.existingSecretPasswordKey -}}
{{- else -}}
{{- .Values.redis.auth.existingSecretPasswordKey -}}
{{- end -}}
{{- end -}}

{{/*
The Redis URL given to both binaries, without the password: that goes in
its own variable (HIPACHE_REDIS_PASSWORD, HIPACHE_SYNCER_REDIS_PASSWORD)
straight from the Secret, so it never appears in the pod spec and needs no
URL escaping. An ACL username stays in the URL (`user:@`).
*/}}
{{- define "hipache.redisURL" -}}
{{- $auth := "" -}}
{{- if include "hipache.redisSecretName" . -}}
{{- $user := "" -}}
{{- if eq .Values.redis.mode "external" -}}{{- $user = .Values.redis.external.username -}}{{- end -}}
{{- if $user -}}{{- $auth = printf "%s:@" $user -}}{{- end -}}
{{- end -}}
{{- $url := "" -}}
{{- if eq .Values.redis.mode "external" -}}
{{- if not .Values.redis.external.url -}}
{{- fail "redis.external.url is required when redis.mode is external" -}}
{{- end -}}
{{- if regexMatch "^rediss?://[^/]*@" .Values.redis.external.url -}}
{{- fail "redis.external.url must not hold a user or password: use redis.external.username and redis.external.existingSecret" -}}
{{- end -}}
{{- $url = regexReplaceAll "^(rediss?://)" .Values.redis.external.url (printf "${1}%s" $auth) -}}
{{- else -}}
{{- $url = printf "redis://%s%s.%s.svc:%d/%d" $auth (include "hipache.redisName" .) .Release.Namespace (int .Values.redis.service.port) (int .Values.redis.database) -}}
{{- end -}}
{{- if .Values.redis.keyPrefix -}}
{{- $url = printf "%s#%s" $url (urlquery .Values.redis.keyPrefix) -}}
{{- end -}}
{{- $url -}}
{{- end -}}

{{/* Env entries: the URL variable named by `.name`, then the password
variable named by `.password` from the Secret (when there is one). */}}
{{- define "hipache.redisEnv" -}}
{{- $secret := include "hipache.redisSecretName" .root -}}
- name: {{ .name }}
  value: {{ include "hipache.redisURL" .root | quote }}
{{- if $secret }}
- name: {{ .password }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "hipache.redisSecretKey" .root }}
{{- end }}
{{- end -}}

{{/* Seconds a proxy pod may take to stop: preStop sleep, drain, margin. */}}
{{- define "hipache.proxyGracePeriod" -}}
{{- add (int .Values.proxy.preStopSleepSeconds) (int .Values.proxy.drainTimeout) 5 -}}
{{- end -}}

{{/* The proxy's default-certificate Secret (when HTTPS is on). */}}
{{- define "hipache.tlsSecretName" -}}
{{- default (printf "%s-default-tls" (include "hipache.fullname" .)) .Values.proxy.https.defaultCertificateSecret -}}
{{- end -}}

{{- define "hipache.errorPagesConfigMap" -}}
{{- default (printf "%s-error-pages" (include "hipache.fullname" .)) .Values.proxy.errorPages.existingConfigMap -}}
{{- end -}}

{{/* Hardened container security context shared by our containers. */}}
{{- define "hipache.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}
