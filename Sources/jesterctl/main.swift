print("jesterctl")
