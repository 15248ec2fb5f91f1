"""Code both services share: errors, request parsing, auth, health, logging, storage plumbing, serving."""
