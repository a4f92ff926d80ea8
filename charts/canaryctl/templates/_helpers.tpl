{{/* The release's full name, capped at 63 characters (a DNS label). */}}
{{- define "canaryctl.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "canaryctl.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "canaryctl.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "canaryctl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "canaryctl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "canaryctl.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "canaryctl.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
What the operator does in a watched namespace, verb by verb (canaryctl's operator, kube and
routers packages); shared by the ClusterRole and the per-namespace Roles. "list, watch" are
the operator's watches (they fill its cache); every write is a patch, create or delete of an
object the rollout owns or scales.
*/}}
{{- define "canaryctl.rules" -}}
- apiGroups: [canaryctl.dev]
  resources: [canaries]
  # patch: the finalizer, and the abort command when a target disappears
  verbs: [get, list, watch, patch]
- apiGroups: [canaryctl.dev]
  resources: [canaries/status]
  # the rollout's record is the Canary's status (update guarded by resourceVersion)
  verbs: [update, patch]
- apiGroups: [apps]
  resources: [deployments]
  # scale stable/canary, create (server-side apply) and delete <target>-primary
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  # the replicas router patches the Service's selector; other routers add a canary Service;
  # managed mode owns <service>-primary/-canary and points the user's Service at the primary
  verbs: [get, create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  # serving pods per version (traffic split checks)
  verbs: [list]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [configmaps]
  # a config change of a managed target starts a rollout; managed mode keeps
  # <name>-primary-<version> copies of the ConfigMaps the target reads (server-side apply,
  # pruned once unused, deleted with the Canary)
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [secrets]
  # as configmaps (checksums and <name>-primary-<version> copies), plus reading a Prometheus
  # credential a Canary names
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  # validation: the replica router refuses a Deployment an HPA scales; weight routers
  # check a canary HPA can hold the stable's capacity; managed mode watches the target's
  # HPAs and keeps <hpa>-primary for the primary (server-side apply, deleted with the Canary)
  verbs: [list, watch, create, patch, delete]
{{- if has "nginx" .Values.routers }}
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  # the canary Ingress (created, weighted, deleted); the primary is only read
  verbs: [get, create, patch, delete]
{{- end }}
{{- if has "gateway" .Values.routers }}
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, patch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [referencegrants]
  verbs: [list]
{{- end }}
{{- if has "istio" .Values.routers }}
- apiGroups: [networking.istio.io]
  resources: [virtualservices]
  verbs: [get, patch]
- apiGroups: [networking.istio.io]
  resources: [destinationrules]
  verbs: [get]
{{- end }}
{{- end -}}
