# embed.cmake - turns a text file into a C array: cmake -DIN=file -DOUT=file.c
# -DNAME=symbol -P embed.cmake writes `const char NAME[] = {..., 0};`.
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}.tmp"
  "/* Generated from ${IN} by cmake/embed.cmake: do not edit. */\n"
  "extern const char ${NAME}[];\nconst char ${NAME}[] = {\n${bytes}0};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
