def main(params):
    """Splits `payload` on `separator` (a newline unless given) into `lines`."""
    payload = str(params.get("payload", ""))
    separator = params.get("separator") or "\n"
    return {"lines": payload.split(separator), "payload": payload}
