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
{{- if .Values.kmsApi.enabled }}
# The KMS API's key management: CreateKey creates Keys and CreateKeyVersion KeyVersions in the
# caller's namespace; the other actions patch a Key's spec (patch on keys is granted above).
- apiGroups: ["keyward.dev"]
  resources: ["keys", "keyversions"]
  verbs: ["create"]
{{- end }}
{{- end }}

{{/* The KMS API's Service (a DNS label: at most 63 characters). */}}
{{- define "keyward.kmsApiServiceName" -}}
{{- printf "%s-kms-api" (include "keyward.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/* The Secret holding the KMS API's certificate: the one named, or the chart's own. */}}
{{- define "keyward.kmsApiTlsSecretName" -}}
{{- .Values.kmsApi.tls.secretName | default (printf "%s-tls" (include "keyward.kmsApiServiceName" .)) }}
{{- end }}

{{/* The ConfigMap publishing the chart-generated CA (ca.crt) for clients. */}}
{{- define "keyward.kmsApiCaName" -}}
{{- printf "%s-ca" (include "keyward.kmsApiServiceName" .) }}
{{- end }}

{{/* Whether the chart makes the KMS API's certificate itself (no Secret named, TLS on). */}}
{{- define "keyward.kmsApiGeneratesTls" -}}
{{- if and .Values.kmsApi.enabled (not .Values.kmsApi.insecureHttp) (not .Values.kmsApi.tls.secretName) }}true{{ end }}
{{- end }}

{{/*
The chart-generated certificate as the Secret's base64 data (ca.crt, tls.crt, tls.key), as
JSON. The Secret already in the cluster is kept (lookup), so that `helm upgrade` does not
rotate it under clients that trust its CA; otherwise a new CA and a serving certificate for
the Service's DNS names. Computed once per render and kept on the root context: the Secret,
the CA ConfigMap and the pods' checksum annotation must see the same certificate, and every
genCA call makes a new one. (`helm template` has no cluster to look in: it renders a new one
each time.)
*/}}
{{- define "keyward.kmsApiTlsData" -}}
{{- if not (hasKey $ "keywardKmsApiTls") }}
{{- $name := include "keyward.kmsApiTlsSecretName" . }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $name }}
{{- $data := dict }}
{{- if and $existing $existing.data (hasKey $existing.data "ca.crt") (hasKey $existing.data "tls.crt") (hasKey $existing.data "tls.key") }}
{{- $data = pick $existing.data "ca.crt" "tls.crt" "tls.key" }}
{{- else }}
{{- $svc := include "keyward.kmsApiServiceName" . }}
{{- $ns := .Release.Namespace }}
{{- $days := int .Values.kmsApi.tls.validityDays }}
{{- $ca := genCA (printf "%s-ca" $svc) $days }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) }}
{{- $cert := genSignedCert (printf "%s.%s.svc" $svc $ns) nil $names $days $ca }}
{{- $data = dict "ca.crt" ($ca.Cert | b64enc) "tls.crt" ($cert.Cert | b64enc) "tls.key" ($cert.Key | b64enc) }}
{{- end }}
{{- $_ := set $ "keywardKmsApiTls" $data }}
{{- end }}
{{- get $ "keywardKmsApiTls" | toJson }}
{{- end }}
