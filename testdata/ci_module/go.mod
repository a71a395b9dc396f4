module goerrprof.test/cimodule

go 1.21
