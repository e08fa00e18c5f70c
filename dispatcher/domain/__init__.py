"""Pure decisions and the words they use: events, Job identity, routing, ingress plans, quantities,
errors, constants, Job facts, outcome classification, backoff, timestamps. No I/O, no third-party client."""
