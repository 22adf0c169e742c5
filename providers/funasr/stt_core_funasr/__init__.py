"""stt-core provider 'funasr': a skeleton. It declares no entry point yet, so it registers no
provider, and a chain that names 'funasr' reports it as not installed."""
