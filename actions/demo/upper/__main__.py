"""`demo/upper`: the second step of the `demo/shout` sequence."""


def main(args: dict) -> dict:
    greeting = args.get("greeting")
    if not isinstance(greeting, str):
        return {"error": "parameter 'greeting' (a string) is required; run this after demo/hello"}
    return {"greeting": greeting.upper()}
