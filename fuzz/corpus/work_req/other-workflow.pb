
Unconfigured
sleep
seconds0