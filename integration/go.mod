module github.com/framecast/framecast/integration

go 1.26.8
