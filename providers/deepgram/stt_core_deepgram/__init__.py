"""stt-core provider 'deepgram': a skeleton. It declares no entry point yet, so it registers no
provider, and a chain that names 'deepgram' reports it as not installed."""
