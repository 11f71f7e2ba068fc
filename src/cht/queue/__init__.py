"""Speech on other machines: chunks and results travel through NATS JetStream (`--queue URL`).

The recording machine keeps everything but the model: its transcribers hand closed chunks to a
`QueueEngine` (the in-process `SpeechEngine`'s stand-in), which publishes them to a durable
work-queue stream; `cht worker` processes anywhere pull them, decode them with their own model
and publish the words back; the engine gives each session its results in chunk order.
"""
