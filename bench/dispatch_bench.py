"""Placeholder replaced below."""


def main(*, quick: bool = False) -> None:
    print("dispatch benchmark: not yet")
