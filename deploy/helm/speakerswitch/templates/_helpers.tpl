{{- /* server pods: component single (one replica) or replica (scale-out's StatefulSet) */ -}}
{{- define "speakerswitch.labels" -}}
app.kubernetes.io/name: speakerswitch
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ if .Values.scaleout.enabled }}replica{{ else }}single{{ end }}
{{- end -}}

{{- define "speakerswitch.proxyLabels" -}}
app.kubernetes.io/name: speakerswitch
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: proxy
{{- end -}}

{{- define "speakerswitch.redisLabels" -}}
app.kubernetes.io/name: speakerswitch
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}
