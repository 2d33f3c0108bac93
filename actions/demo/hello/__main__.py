"""`demo/hello`: the smallest real action, for checking a platform end to end."""

import os


def main(args: dict) -> dict:
    name = args.get("name", "stranger")
    if not isinstance(name, str) or not name:
        return {"error": "parameter 'name' must be a non-empty string"}
    print(f"greeting {name} in activation {os.environ.get('__OW_ACTIVATION_ID')}")
    return {"greeting": f"{args.get('salutation', 'Hello')}, {name}!"}
