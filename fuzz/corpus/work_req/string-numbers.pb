
x
sleep
seconds1ZP