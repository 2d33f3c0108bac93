def main(params):
    """The first `num` of `lines` (one unless given)."""
    lines = list(params.get("lines") or [])
    num = int(params.get("num", 1))
    return {"lines": lines[:num], "num": num}
