print("jester")
