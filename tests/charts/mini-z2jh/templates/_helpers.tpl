{{- define "mini.labels" -}}
app: jupyterhub
release: {{ .Release.Name }}
chart: {{ .Chart.Name }}-{{ .Chart.Version }}
heritage: {{ .Release.Service }}
{{- end -}}

{{- /* The proxy token: the configured one, else a fresh random one on every render. */ -}}
{{- define "mini.proxyToken" -}}
{{- .Values.proxy.secretToken | default (randAlphaNum 64) -}}
{{- end -}}
