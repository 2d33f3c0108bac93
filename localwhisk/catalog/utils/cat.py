def main(params):
    """Joins `lines` with newlines into `payload`."""
    lines = [str(line) for line in params.get("lines") or []]
    return {"lines": lines, "payload": "\n".join(lines)}
