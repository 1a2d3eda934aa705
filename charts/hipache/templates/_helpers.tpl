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

{{/* The syncer's Lease (HA): one per release. */}}
{{- define "hipache.leaseName" -}}
{{- default (include "hipache.syncerName" .) .Values.syncer.ha.leaseName -}}
{{- end -}}

{{- define "hipache.redisName" -}}
{{- printf "%s-redis" (include "hipache.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "true" when the internal Redis runs with Sentinels (`redis.ha`). */}}
{{- define "hipache.redisHA" -}}
{{- if and (eq .Values.redis.mode "internal") .Values.redis.ha.enabled -}}true{{- end -}}
{{- end -}}

{{/* The headless Service that names each Redis pod (HA). */}}
{{- define "hipache.redisHeadlessName" -}}
{{- printf "%s-headless" (include "hipache.redisName" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{/* The port of every Sentinel (HA), Redis Sentinel's own default. */}}
{{- define "hipache.sentinelPort" -}}26379{{- end -}}

{{/*
DNS names of the Redis pods (HA), space-separated: the StatefulSet's pod
names under the headless Service. Redis, Sentinel and the clients all use
these names (`replica-announce-ip`, `announce-ip`, `announce-hostnames`), so
an address stays valid when a pod comes back with another IP.
*/}}
{{- define "hipache.redisHosts" -}}
{{- $name := include "hipache.redisName" . -}}
{{- $domain := printf "%s.%s.svc" (include "hipache.redisHeadlessName" .) .Release.Namespace -}}
{{- $hosts := list -}}
{{- range $i := until (int .Values.redis.ha.replicas) -}}
{{- $hosts = append $hosts (printf "%s-%d.%s" $name $i $domain) -}}
{{- end -}}
{{- join " " $hosts -}}
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

{{/*
Names of cluster-scoped objects (ClusterRole, ClusterRoleBinding): the
syncer's name and the release namespace, so that releases of the same name
in two namespaces do not take each other's objects.
*/}}
{{- define "hipache.clusterScopedName" -}}
{{- printf "%s-%s" (include "hipache.syncerName" .) .Release.Namespace -}}
{{- end -}}

{{/*
An image reference from `.image` (registry, repository, tag, digest), with
`.tag` as the default tag: `registry/repository@digest` when a digest is
given (it wins over the tag), else `registry/repository:tag`.
*/}}
{{- define "hipache.image" -}}
{{- $i := .image -}}
{{- $ref := $i.repository -}}
{{- with $i.registry }}{{ $ref = printf "%s/%s" (trimSuffix "/" .) $ref }}{{ end -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $ref $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (default .tag $i.tag) -}}
{{- end -}}
{{- end -}}

{{- define "hipache.proxyImage" -}}
{{- include "hipache.image" (dict "image" .Values.proxy.image "tag" .Chart.AppVersion) -}}
{{- end -}}

{{- define "hipache.syncerImage" -}}
{{- include "hipache.image" (dict "image" .Values.syncer.image "tag" .Chart.AppVersion) -}}
{{- end -}}

{{/* The internal Redis server's image values (`redis.flavor`). */}}
{{- define "hipache.redisImageValues" -}}
{{- toYaml (ternary .Values.redis.valkeyImage .Values.redis.image (eq .Values.redis.flavor "valkey")) -}}
{{- end -}}

{{/* Prefix of the server's binaries: `redis` (redis-server, redis-cli) or
`valkey` (valkey-server, valkey-cli). */}}
{{- define "hipache.redisBin" -}}
{{- ternary "valkey" "redis" (eq .Values.redis.flavor "valkey") -}}
{{- end -}}

{{/*
Bytes of a Kubernetes memory quantity (`512Mi`, `1G`, `1073741824`).
*/}}
{{- define "hipache.bytes" -}}
{{- $q := toString . -}}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 -}}
{{- $m := regexFindAll "^([0-9]+(?:\\.[0-9]+)?)([A-Za-z]*)$" $q 1 -}}
{{- $unit := regexReplaceAll "^[0-9.]+" $q "" -}}
{{- if or (not $m) (not (hasKey $units $unit)) -}}
{{- fail (printf "%q is not a memory quantity the chart understands (a number with k, M, G, T, Ki, Mi, Gi or Ti)" $q) -}}
{{- end -}}
{{- mulf (float64 (trimSuffix $unit $q)) (index $units $unit) | int64 -}}
{{- end -}}

{{/*
The internal Redis's `maxmemory`: `redis.maxmemory`, else
`redis.maxmemoryPercent` of the container's memory limit (in bytes); empty:
none.
*/}}
{{- define "hipache.redisMaxmemory" -}}
{{- $r := .Values.redis -}}
{{- $limit := ((($r.resources).limits).memory) -}}
{{- if $r.maxmemory -}}
{{- $r.maxmemory -}}
{{- else if and $limit (gt (int $r.maxmemoryPercent) 0) -}}
{{- div (mul (include "hipache.bytes" $limit | int64) (int $r.maxmemoryPercent)) 100 -}}
{{- end -}}
{{- end -}}

{{/*
`topologySpreadConstraints` of a pod spec from `.constraints`, each given
the component's selector (`.component`); nothing when there are none.
*/}}
{{- define "hipache.topologySpread" -}}
{{- if .constraints -}}
topologySpreadConstraints:
  {{- range .constraints }}
  - {{- toYaml (omit . "labelSelector") | nindent 4 }}
    labelSelector:
      matchLabels:
        {{- include "hipache.selectorLabels" (dict "root" $.root "component" $.component) | nindent 8 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
The Redis credentials of one binary (`.role`: "proxy" or "syncer"), as YAML
with `user`, `secret` and `key` (`secret` empty: no password). Internal
mode: the role's own ACL user and its key in the users' Secret. External
mode: the role's values, else the shared ones.
*/}}
{{- define "hipache.redisAuth" -}}
{{- $v := .root.Values.redis -}}
{{- if eq $v.mode "external" -}}
{{- $own := index $v.external .role -}}
user: {{ default $v.external.username $own.username | quote }}
secret: {{ default $v.external.existingSecret $own.existingSecret | quote }}
key: {{ default $v.external.existingSecretPasswordKey $own.existingSecretPasswordKey | quote }}
{{- else if $v.auth.enabled -}}
user: {{ .role | quote }}
secret: {{ include "hipache.redisUsersSecret" .root | quote }}
key: {{ index $v.auth.passwordKeys .role | quote }}
{{- else -}}
user: ""
secret: ""
key: ""
{{- end -}}
{{- end -}}

{{/*
The Sentinels' password of both binaries, as YAML with `secret` and `key`
(`secret` empty: none). Internal HA mode: `redis.auth.passwordKeys.sentinel`
of the users' Secret (with auth on). External mode with a
`redis+sentinel://` URL: `redis.external.sentinel`. Else none.
*/}}
{{- define "hipache.sentinelAuth" -}}
{{- $v := .Values.redis -}}
{{- if include "hipache.redisHA" . -}}
{{- if $v.auth.enabled -}}
secret: {{ include "hipache.redisUsersSecret" . | quote }}
key: {{ $v.auth.passwordKeys.sentinel | quote }}
{{- else -}}
secret: ""
key: ""
{{- end -}}
{{- else if and (eq $v.mode "external") (regexMatch "^rediss?\\+sentinel://" $v.external.url) -}}
secret: {{ $v.external.sentinel.existingSecret | quote }}
key: {{ $v.external.sentinel.existingSecretPasswordKey | quote }}
{{- else -}}
secret: ""
key: ""
{{- end -}}
{{- end -}}

{{/* The Secret holding the internal Redis users' passwords. */}}
{{- define "hipache.redisUsersSecret" -}}
{{- default (include "hipache.redisName" .) .Values.redis.auth.existingSecret -}}
{{- end -}}

{{/*
The Redis URL given to one binary (`.role`), without the password: that
goes in its own variable (HIPACHE_REDIS_PASSWORD,
HIPACHE_SYNCER_REDIS_PASSWORD) straight from the Secret, so it never
appears in the pod spec and needs no URL escaping. The ACL user name stays
in the URL (`user:@`).
*/}}
{{- define "hipache.redisURL" -}}
{{- $root := .root -}}
{{- $a := include "hipache.redisAuth" . | fromYaml -}}
{{- $auth := "" -}}
{{- if and $a.secret $a.user -}}{{- $auth = printf "%s:@" $a.user -}}{{- end -}}
{{- $url := "" -}}
{{- if eq $root.Values.redis.mode "external" -}}
{{- if not $root.Values.redis.external.url -}}
{{- fail "redis.external.url is required when redis.mode is external" -}}
{{- end -}}
{{- if regexMatch "^rediss?(\\+sentinel)?://[^/]*@" $root.Values.redis.external.url -}}
{{- fail "redis.external.url must not hold a user or password: use redis.external.username and redis.external.existingSecret" -}}
{{- end -}}
{{- if regexMatch "[?&]sentinel_password=" $root.Values.redis.external.url -}}
{{- fail "redis.external.url must not hold sentinel_password: use redis.external.sentinel.existingSecret" -}}
{{- end -}}
{{- $url = regexReplaceAll "^(rediss?(\\+sentinel)?://)" $root.Values.redis.external.url (printf "${1}%s" $auth) -}}
{{- else if include "hipache.redisHA" $root -}}
{{- /* Every pod's Sentinel, the master's name, the database. */ -}}
{{- $sentinels := list -}}
{{- range splitList " " (include "hipache.redisHosts" $root) -}}
{{- $sentinels = append $sentinels (printf "%s:%s" . (include "hipache.sentinelPort" $root)) -}}
{{- end -}}
{{- $url = printf "redis+sentinel://%s%s/%s/%d" $auth (join "," $sentinels) $root.Values.redis.ha.masterName (int $root.Values.redis.database) -}}
{{- if and (eq .role "proxy") (eq $root.Values.redis.ha.readFrom "master") -}}
{{- $url = printf "%s?read_from=master" $url -}}
{{- end -}}
{{- else -}}
{{- $url = printf "redis://%s%s.%s.svc:%d/%d" $auth (include "hipache.redisName" $root) $root.Release.Namespace (int $root.Values.redis.service.port) (int $root.Values.redis.database) -}}
{{- end -}}
{{- if $root.Values.redis.keyPrefix -}}
{{- $url = printf "%s#%s" $url (urlquery $root.Values.redis.keyPrefix) -}}
{{- end -}}
{{- $url -}}
{{- end -}}

{{/* Env entries of one binary (`.role`): the URL variable named by `.name`,
then the password variable named by `.password` from the Secret (when there
is one), then, with Sentinels, their password in the variable named by
`.sentinelPassword` (when they have one). */}}
{{- define "hipache.redisEnv" -}}
{{- $a := include "hipache.redisAuth" . | fromYaml -}}
{{- $s := include "hipache.sentinelAuth" .root | fromYaml -}}
- name: {{ .name }}
  value: {{ include "hipache.redisURL" . | quote }}
{{- if $a.secret }}
- name: {{ .password }}
  valueFrom:
    secretKeyRef:
      name: {{ $a.secret }}
      key: {{ $a.key }}
{{- end }}
{{- if $s.secret }}
- name: {{ .sentinelPassword }}
  valueFrom:
    secretKeyRef:
      name: {{ $s.secret }}
      key: {{ $s.key }}
{{- end }}
{{- end -}}

{{/*
Redis ACL rules (docs/security.md, "Redis users"), without the user name
and the password. Key patterns carry `redis.keyPrefix` made literal for a
glob; the `dead` and `tls` channels and `hchecker_ping` are never prefixed.
Every command a binary sends is listed: the code is the reference
(proxy/src/routing, proxy/src/tls/redis.rs, proxy/src/ratelimit,
syncer/src/store.rs, syncer/src/health.rs); tests/packaging/test_redis_acl.py runs them against a
real Redis. AUTH and HELLO are always allowed by Redis.
*/}}
{{- define "hipache.aclPrefix" -}}
{{- regexReplaceAll "([][*?\\\\])" .Values.redis.keyPrefix "\\${1}" -}}
{{- end -}}

{{/* The proxy: reads routes (lists and route documents), dead marks,
certificates and the health checker's ping; writes dead marks (SADD +
EXPIRE + PUBLISH in MULTI); subscribes to `tls`; client tracking on the
route connection (both cache modes; PING confirms routes in strict
mode). Rate limits (proxy/src/ratelimit): the GCRA script
run with EVALSHA (SCRIPT LOAD when Redis does not know it), which calls
TIME, GET and SET; a selector, `( … )`, keeps those to `ratelimit:` keys
(SET nowhere else, no script on another key). */}}
{{- define "hipache.acl.proxy" -}}
{{- $p := include "hipache.aclPrefix" . -}}
reset on -@all +ping +select +client|setinfo +client|tracking +lrange +smembers +get +mget +hmget +scan +multi +exec +sadd +expire +publish +subscribe +unsubscribe {{ printf "%%R~%sfrontend:*" $p }} {{ printf "%%R~%sroutes:*" $p }} {{ printf "~%sdead:*" $p }} {{ printf "%%R~%stls:*" $p }} %R~hchecker_ping resetchannels &dead &tls {{ printf "(~%sratelimit:* +evalsha +script|load +time +get +set)" $p }}
{{- end -}}

{{/* The syncer: owned frontends and certificates (WATCH, read, MULTI …
EXEC), resync and health-check SCANs, dead marks, `hchecker_ping`,
certificate changes published on `tls`, dead events followed on `dead`. */}}
{{- define "hipache.acl.syncer" -}}
{{- $p := include "hipache.aclPrefix" . -}}
reset on -@all +ping +select +client|setinfo +scan +lrange +hgetall +watch +unwatch +multi +exec +discard +del +rpush +hset +hmset +sadd +srem +expire +set +exists +publish +subscribe +unsubscribe {{ printf "~%sfrontend:*" $p }} {{ printf "~%sdead:*" $p }} {{ printf "~%stls:*" $p }} {{ printf "~%ssyncer:*" $p }} %W~hchecker_ping resetchannels &dead &tls
{{- end -}}

{{/* What a redis-cli tenant does to its own frontends, route documents and
dead marks: lists, strings (GET/SET of a document), sets, expiry,
transactions. No key listing (KEYS and SCAN would show
every tenant's hosts), no pub/sub. */}}
{{- define "hipache.acl.tenantCommands" -}}
-@all +ping +select +command|docs +multi +exec +discard +watch +unwatch +exists +type +del +expire +persist +ttl +get +set +lrange +llen +lindex +lpos +rpush +lpush +rpushx +lpushx +linsert +lset +lrem +ltrim +lpop +rpop +smembers +sismember +scard +sadd +srem
{{- end -}}

{{/* One tenant (`.tenant`: name, hosts). */}}
{{- define "hipache.acl.tenant" -}}
{{- $p := include "hipache.aclPrefix" .root -}}
reset on {{ include "hipache.acl.tenantCommands" .root }}
{{- range .tenant.hosts }} {{ printf "~%sfrontend:%s" $p . }} {{ printf "~%sroutes:%s" $p . }} {{ printf "~%sdead:%s" $p . }}{{ end }} resetchannels
{{- end -}}

{{/* `default` during a migration from the shared password
(`redis.auth.legacyPassword`): what tenants did before, on every host, but
no `tls:` key and no administration. Else disabled. */}}
{{- define "hipache.acl.default" -}}
{{- $p := include "hipache.aclPrefix" . -}}
{{- if .Values.redis.auth.legacyPassword -}}
reset on {{ include "hipache.acl.tenantCommands" . }} +keys +scan +publish +subscribe +unsubscribe {{ printf "~%sfrontend:*" $p }} {{ printf "~%sroutes:*" $p }} {{ printf "~%sdead:*" $p }} resetchannels &dead
{{- else -}}
reset off
{{- end -}}
{{- end -}}

{{/* Operators: everything. */}}
{{- define "hipache.acl.admin" -}}
reset on ~* &* +@all
{{- end -}}

{{/* HA: a replica's link to its master (Redis's replication docs). */}}
{{- define "hipache.acl.replication" -}}
reset on -@all +psync +replconf +ping
{{- end -}}

{{/* HA: what a Sentinel sends to the Redis servers it monitors (Redis
Sentinel docs, "Redis Access Control List authentication"): INFO, ROLE and
PING to watch them, hello messages on `__sentinel__:hello`, and to fail over
SLAVEOF (REPLICAOF) in MULTI … EXEC with CONFIG REWRITE and CLIENT KILL.
No key. */}}
{{- define "hipache.acl.sentinel" -}}
reset on -@all +ping +info +role +multi +exec +slaveof +replicaof +config|rewrite +client|setname +client|kill +script|kill +subscribe +publish resetchannels &__sentinel__:hello
{{- end -}}

{{/*
Data of the internal Redis ConfigMap: redis.conf, and with auth the ACL
users without their passwords (users.acl: one `user <name> <rules>` line
each). The container's start script (redis.yaml) appends each user's
password as `#<sha256>` from the Secret files and writes the file Redis
loads, so no password is in a ConfigMap, on a command line or in clear on
disk.
*/}}
{{- define "hipache.redisConfigData" -}}
{{- $r := .Values.redis -}}
redis.conf: |
  bind * -::*
  port 6379
  protected-mode no
  dir /data
  {{- if $r.persistence.enabled }}
  appendonly yes
  appendfsync everysec
  {{- else }}
  appendonly no
  save ""
  {{- end }}
  {{- with include "hipache.redisMaxmemory" . }}
  # Routes must never be evicted: a full Redis refuses writes instead.
  maxmemory {{ . }}
  maxmemory-policy noeviction
  {{- end }}
  {{- if $r.auth.enabled }}
  # ACL users (docs/security.md, "Redis users"), written at start.
  aclfile /run/redis/users.acl
  acl-pubsub-default resetchannels
  {{- end }}
{{- if include "hipache.redisHA" . }}
sentinel.conf: |
  # Sentinel (redis.ha). The init container appends this pod's name, the
  # password and the master to monitor; Sentinel then rewrites the file
  # (an emptyDir) as it learns replicas, Sentinels and failovers.
  port {{ include "hipache.sentinelPort" . }}
  bind * -::*
  protected-mode no
  dir /run/sentinel
  sentinel resolve-hostnames yes
  sentinel announce-hostnames yes
{{- end }}
{{- if $r.auth.enabled }}
users.acl: |
  user default {{ include "hipache.acl.default" . }}
  user admin {{ include "hipache.acl.admin" . }}
  user proxy {{ include "hipache.acl.proxy" . }}
  user syncer {{ include "hipache.acl.syncer" . }}
  {{- if include "hipache.redisHA" . }}
  user replication {{ include "hipache.acl.replication" . }}
  user sentinel {{ include "hipache.acl.sentinel" . }}
  {{- end }}
  {{- range $r.auth.tenants }}
  user {{ .name }} {{ include "hipache.acl.tenant" (dict "root" $ "tenant" .) }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Seconds a proxy pod may take to stop: preStop sleep, drain, margin. */}}
{{- define "hipache.proxyGracePeriod" -}}
{{- add (int .Values.proxy.preStopSleepSeconds) (int .Values.proxy.drainTimeout) 5 -}}
{{- end -}}

{{/*
Secrets the chart generates (random content, kept across `helm upgrade` by
`lookup`): "true" or empty. Rendered offline (`helm template`, as Argo CD
and Flux do), `lookup` finds nothing and they change at every render; the
existing-Secret values avoid them (README, "GitOps").
*/}}
{{- define "hipache.generatesRedisSecret" -}}
{{- $r := .Values.redis -}}
{{- if and (eq $r.mode "internal") $r.auth.enabled (not $r.auth.existingSecret) -}}true{{- end -}}
{{- end -}}

{{- define "hipache.generatesTlsSecret" -}}
{{- if and .Values.proxy.https.enabled (not .Values.proxy.https.defaultCertificateSecret) -}}true{{- end -}}
{{- end -}}

{{/* The proxy's default-certificate Secret (when HTTPS is on). */}}
{{- define "hipache.tlsSecretName" -}}
{{- default (printf "%s-default-tls" (include "hipache.fullname" .)) .Values.proxy.https.defaultCertificateSecret -}}
{{- end -}}

{{- define "hipache.errorPagesConfigMap" -}}
{{- default (printf "%s-error-pages" (include "hipache.fullname" .)) .Values.proxy.errorPages.existingConfigMap -}}
{{- end -}}

{{/*
Shell lines that choose this Redis pod's master (HA), for the init
container and for a restart of the Redis container: sets `name`, `me` and
`master` (`$me` itself: this pod is the master). The master is the one
the first other pod's Sentinel that answers names; when none answers,
`$fallback`. When they name this pod, whose Redis is not running, it waits
(at most down-after plus failover timeout) for them to promote a replica
instead, so that this pod never comes back as a second master, nor,
without persistence, as an empty one that its replicas would copy.
*/}}
{{- define "hipache.redisChooseMaster" -}}
{{- $r := .Values.redis -}}
{{- $bin := include "hipache.redisBin" . -}}
{{- $wait := div (add (int64 $r.ha.downAfterMilliseconds) (int64 $r.ha.failoverTimeout)) 1000 -}}
name={{ $r.ha.masterName }}
me="$POD_NAME.{{ include "hipache.redisHeadlessName" . }}.{{ .Release.Namespace }}.svc"
hosts="{{ include "hipache.redisHosts" . }}"
# The master as the first other Sentinel that answers names it.
sentinel_master() {
  for h in $hosts; do
    [ "$h" = "$me" ] && continue
    reply=$({{ if $r.auth.enabled }}{{ range ternary (list "REDISCLI_AUTH" "VALKEYCLI_AUTH") (list "REDISCLI_AUTH") (eq $bin "valkey") }}{{ . }}="$SENTINEL_PASSWORD" {{ end }}{{ end }}timeout 3 {{ $bin }}-cli -h "$h" -p {{ include "hipache.sentinelPort" . }} --raw sentinel get-master-addr-by-name "$name" 2>/dev/null) || continue
    port=$(printf '%s\n' "$reply" | sed -n 2p)
    case "$port" in "" | *[!0-9]*) continue ;; esac
    printf '%s\n' "$reply" | sed -n 1p
    return 0
  done
}
master=$(sentinel_master)
if [ -z "$master" ]; then
  master=$fallback
  echo "redis: no Sentinel answers: $master is the master"
elif [ "$master" = "$me" ]; then
  echo "redis: the Sentinels still name this pod: waiting for a failover"
  end=$(( $(date +%s) + {{ $wait }} ))
  while [ "$master" = "$me" ] && [ "$(date +%s)" -lt "$end" ]; do
    sleep 1
    master=$(sentinel_master)
    [ -n "$master" ] || master=$me
  done
fi
if [ "$master" = "$me" ]; then
  echo "redis: starting as the master"
else
  echo "redis: starting as a replica of $master"
fi
{{- end -}}
