"""Model access through the `openai` client, against any OpenAI-compatible endpoint.

Not workflow-safe. Modules: `endpoints` (profiles from the worker's environment),
`errors` (HTTP status to retryable or not), `parser` (tool calls written as
text), `transcripts` (the conversation store), `activity` (`call_model`),
`scripted` (an OpenAI-compatible test double that answers from a script).
"""
