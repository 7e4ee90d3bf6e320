module github.com/framecast/framecast/services/gateway

go 1.26.8
