from analyses.embedded.train import main

main()
