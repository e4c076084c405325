{{/* The chart name, or nameOverride. */}}
{{- define "keyward.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: fullnameOverride, or release name + chart name (once). */}}
{{- define "keyward.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The name of cluster-scoped objects (ClusterRoles, ClusterRoleBindings): the release namespace
and full name, so that releases of the same name in different namespaces do not collide.
*/}}
{{- define "keyward.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "keyward.fullname" .) }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "keyward.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "keyward.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: keyward
{{- end }}

{{/* Labels selecting the operator pods. */}}
{{- define "keyward.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keyward.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "keyward.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "keyward.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Lease that elects the leader. */}}
{{- define "keyward.leaseName" -}}
{{- default (include "keyward.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The rules for Keys, KeyVersions, Secrets and Events: a ClusterRole's in cluster-wide mode, a
Role's in namespaced mode. Exactly the calls the operator makes, nothing more.
*/}}
{{- define "keyward.operatorRules" -}}
- apiGroups: ["keyward.dev"]
  resources: ["keys", "keyversions", "accesskeys"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["keyward.dev"]
  resources: ["keys"]
  verbs: ["patch"]
- apiGroups: ["keyward.dev"]
  resources: ["keys/status", "keyversions/status", "accesskeys/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
