{{- define "speakerswitch.labels" -}}
app.kubernetes.io/name: speakerswitch
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: single
{{- end -}}
