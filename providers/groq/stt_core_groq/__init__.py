"""stt-core provider 'groq': a skeleton. It declares no entry point yet, so it registers no
provider, and a chain that names 'groq' reports it as not installed."""
