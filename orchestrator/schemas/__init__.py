"""The API's requests and responses as pydantic models: the one definition of each field set. Domain code
validates what callers send with them (`common.validated`, a bad field is InvalidInput naming it) and
builds what it answers with them; /openapi.json is generated from them."""
