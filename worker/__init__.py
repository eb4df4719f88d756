"""The arq worker: everything that runs a job."""
