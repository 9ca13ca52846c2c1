{{/* The chart name, 63 characters at most. */}}
{{- define "nameplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the release name, with the chart name unless it has it. */}}
{{- define "nameplane.fullname" -}}
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

{{/* Name of the operator's Deployment, PDB, ClusterRole and ClusterRoleBinding. */}}
{{- define "nameplane.operatorName" -}}
{{- printf "%s-operator" (include "nameplane.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nameplane.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "nameplane.labels" -}}
helm.sh/chart: {{ include "nameplane.chart" . }}
app.kubernetes.io/part-of: nameplane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector of the operator's Pods. */}}
{{- define "nameplane.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "nameplane.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "nameplane.operatorLabels" -}}
{{ include "nameplane.labels" . }}
app.kubernetes.io/name: {{ include "nameplane.name" . }}-operator
app.kubernetes.io/component: operator
{{- end }}

{{- define "nameplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nameplane.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image holding both binaries: pinned by digest when image.digest is set (the tag,
if any, is then only for people reading it). */}}
{{- define "nameplane.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name of the leader-election Lease (and of the Role that grants access to it). */}}
{{- define "nameplane.leaseName" -}}
{{- include "nameplane.operatorName" . }}
{{- end }}

{{/* Name of the default DNSServer. */}}
{{- define "nameplane.dnsServerName" -}}
{{- default (include "nameplane.fullname" .) .Values.dnsServer.name | trunc 59 | trimSuffix "-" }}
{{- end }}

{{/* The DNS Service the operator creates for the default DNSServer: `<server>-dns`. */}}
{{- define "nameplane.dnsServiceName" -}}
{{- default (printf "%s-dns" (include "nameplane.dnsServerName" .)) .Values.tests.dnsService }}
{{- end }}

{{/* The namespaces that may hold DNSServers, comma-separated: dnsServerNamespaces, or the
release namespace. */}}
{{- define "nameplane.dnsServerNamespaces" -}}
{{- if .Values.dnsServerNamespaces }}
{{- join "," .Values.dnsServerNamespaces }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}
