"""The controller: OpenWhisk's REST API v1, split as OpenWhisk splits its routes."""
